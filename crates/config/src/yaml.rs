//! A YAML walker that turns a marked tree into typed values and collects every error with
//! its key path, line and column. Shared by the config and (later) the policy file.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node, Span};
use std::fmt;
use std::time::Duration;

/// One problem in a file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(top level)" } else { &self.path };
        write!(f, "{}:{}:{}: {}: {}", self.source, self.line, self.column, path, self.message)
    }
}

/// Every problem found in a file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} error{} in configuration:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while a file is walked.
#[derive(Debug)]
pub struct Walker {
    source: String,
    errors: Vec<ConfigError>,
}

impl Walker {
    pub fn new(source: &str) -> Walker {
        Walker { source: source.to_owned(), errors: Vec::new() }
    }

    /// Parse text into the root mapping. An empty file is an empty mapping.
    pub fn load(&mut self, text: &str) -> Option<Node> {
        if text.trim().is_empty() {
            return Some(Node::Mapping(MarkedMappingNode::new_empty(Span::new_blank())));
        }
        let options = LoaderOptions::default().error_on_duplicate_keys(true).toplevel_mapping();
        match marked_yaml::parse_yaml_with_options(0, text, options) {
            Ok(node) => Some(node),
            Err(e) => {
                let (line, column) = load_error_position(&e);
                let message = strip_marker_prefix(&e.to_string());
                self.errors.push(ConfigError {
                    source: self.source.clone(),
                    path: String::new(),
                    line,
                    column,
                    message,
                });
                None
            }
        }
    }

    pub fn error(&mut self, span: &Span, path: &str, message: impl Into<String>) {
        let (line, column) = span.start().map(|m| (m.line(), m.column())).unwrap_or((1, 1));
        self.errors.push(ConfigError {
            source: self.source.clone(),
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The walk's result: the value when no error was recorded, every error otherwise.
    pub fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => {
                if self.errors.is_empty() {
                    self.error(&Span::new_blank(), "", "the file is not valid");
                }
                // Report in file order, whatever order the walk found them in.
                self.errors.sort_by_key(|e| (e.line, e.column));
                Err(ConfigErrors(self.errors))
            }
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

fn load_error_position(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError::*;
    let marker = match e {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(*m),
        DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    marker.map(|m| (m.line(), m.column())).unwrap_or((1, 1))
}

fn strip_marker_prefix(message: &str) -> String {
    // LoadError's Display starts with "line N column M: "; we print the position ourselves.
    match message.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_owned(),
        _ => message.to_owned(),
    }
}

/// A mapping being read: fields are taken one by one, and whatever is left at
/// [`Map::finish`] is reported as an unknown key.
#[derive(Debug)]
pub struct Map<'a> {
    node: &'a MarkedMappingNode,
    path: String,
    taken: Vec<&'static str>,
}

/// Run `f` over an empty mapping: a section that is absent gets exactly the defaults it
/// would get if it were present and empty.
pub fn with_empty_map<T>(w: &mut Walker, f: impl FnOnce(&mut Map<'_>, &mut Walker) -> T) -> T {
    let node = MarkedMappingNode::new_empty(Span::new_blank());
    let mut m = Map { node: &node, path: String::new(), taken: Vec::new() };
    f(&mut m, w)
}

/// A value at a key path.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub node: &'a Node,
    path: &'a str,
}

impl<'a> Map<'a> {
    pub fn root(node: &'a Node, w: &mut Walker) -> Option<Map<'a>> {
        Field { node, path: "" }.map(w, String::new())
    }

    /// Read `key`, calling `f` with the field and its path when present.
    pub fn field<T>(
        &mut self,
        key: &'static str,
        w: &mut Walker,
        f: impl FnOnce(Field<'_>, &mut Walker) -> Option<T>,
    ) -> Option<T> {
        self.taken.push(key);
        let node = self.node.get_node(key)?;
        let path = child_path(&self.path, key);
        if is_null(node) {
            return None;
        }
        f(Field { node, path: &path }, w)
    }

    /// Read `key`, which must be given: absent or null is an error at the mapping.
    pub fn required<T>(
        &mut self,
        key: &'static str,
        w: &mut Walker,
        f: impl FnOnce(Field<'_>, &mut Walker) -> Option<T>,
    ) -> Option<T> {
        let given = self.node.get_node(key).is_some_and(|n| !is_null(n));
        if !given {
            // At the mapping's first key: where the entry begins in the file.
            let at = self.node.keys().next().map_or(self.node.span(), |k| k.span());
            w.error(at, &child_path(&self.path, key), "required");
        }
        self.field(key, w, f)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn span(&self) -> &Span {
        self.node.span()
    }

    /// Report unknown keys: a typo must not silently fall back to a default.
    pub fn finish(self, w: &mut Walker) {
        for (key, _) in self.node.iter() {
            if !self.taken.contains(&key.as_str()) {
                let expected = self.taken.join(", ");
                w.error(
                    key.span(),
                    &child_path(&self.path, key.as_str()),
                    format!("unknown key; expected one of: {expected}"),
                );
            }
        }
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "null" | "~" | ""))
}

impl<'a> Field<'a> {
    pub fn path(&self) -> &str {
        self.path
    }

    pub fn span(&self) -> &Span {
        self.node.span()
    }

    pub fn map(self, w: &mut Walker, path: String) -> Option<Map<'a>> {
        match self.node {
            Node::Mapping(m) => Some(Map { node: m, path, taken: Vec::new() }),
            other => {
                w.error(other.span(), self.path, "expected a mapping");
                None
            }
        }
    }

    /// This field as a nested mapping.
    pub fn mapping(self, w: &mut Walker) -> Option<Map<'a>> {
        let path = self.path.to_owned();
        self.map(w, path)
    }

    fn scalar(self, w: &mut Walker, what: &str) -> Option<&'a MarkedScalarNode> {
        match self.node {
            Node::Scalar(s) => Some(s),
            other => {
                w.error(other.span(), self.path, format!("expected {what}"));
                None
            }
        }
    }

    pub fn string(self, w: &mut Walker) -> Option<String> {
        self.scalar(w, "a string").map(|s| s.as_str().to_owned())
    }

    pub fn non_empty_string(self, w: &mut Walker) -> Option<String> {
        let s = self.string(w)?;
        if s.trim().is_empty() {
            w.error(self.span(), self.path, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn bool(self, w: &mut Walker) -> Option<bool> {
        let s = self.scalar(w, "true or false")?;
        let b = s.as_bool();
        if b.is_none() {
            w.error(s.span(), self.path, format!("expected true or false, found `{}`", s.as_str()));
        }
        b
    }

    pub fn u64_in(self, w: &mut Walker, min: u64, max: u64) -> Option<u64> {
        let s = self.scalar(w, "a whole number")?;
        match s.as_str().trim().replace('_', "").parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) => {
                w.error(s.span(), self.path, format!("{n} is out of range ({min} to {max})"));
                None
            }
            Err(_) => {
                w.error(
                    s.span(),
                    self.path,
                    format!("expected a whole number, found `{}`", s.as_str()),
                );
                None
            }
        }
    }

    /// A byte size: a number, optionally with KiB/MiB/GiB.
    pub fn bytes_in(self, w: &mut Walker, min: u64, max: u64) -> Option<u64> {
        let s = self.scalar(w, "a size")?;
        let text = s.as_str().trim();
        let (digits, mult) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
            .iter()
            .find_map(|(suffix, m)| text.strip_suffix(suffix).map(|d| (d.trim(), *m)))
            .unwrap_or((text, 1));
        match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                w.error(s.span(), self.path, format!("{n} bytes is out of range ({min} to {max})"));
                None
            }
            None => {
                w.error(s.span(), self.path, format!("expected a size like 32MiB, found `{text}`"));
                None
            }
        }
    }

    pub fn duration_in(self, w: &mut Walker, min: Duration, max: Duration) -> Option<Duration> {
        let s = self.scalar(w, "a duration")?;
        match crate::parse_duration(s.as_str()) {
            Ok(d) if d >= min && d <= max => Some(d),
            Ok(_) => {
                w.error(
                    s.span(),
                    self.path,
                    format!(
                        "`{}` is out of range ({} to {})",
                        s.as_str(),
                        crate::format_duration(min),
                        crate::format_duration(max)
                    ),
                );
                None
            }
            Err(e) => {
                w.error(s.span(), self.path, e);
                None
            }
        }
    }

    pub fn string_list(self, w: &mut Walker) -> Option<Vec<String>> {
        match self.node {
            Node::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, item) in seq.iter().enumerate() {
                    let path = format!("{}[{i}]", self.path);
                    if let Some(s) = (Field { node: item, path: &path }).non_empty_string(w) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            other => {
                w.error(other.span(), self.path, "expected a list of strings");
                None
            }
        }
    }

    /// Call `f` for each key and value of a mapping whose keys are names the file chooses
    /// (detector names, group names), in file order.
    pub fn entries<T>(
        self,
        w: &mut Walker,
        mut f: impl FnMut(&str, Field<'_>, &mut Walker) -> Option<T>,
    ) -> Option<Vec<T>> {
        match self.node {
            Node::Mapping(m) => {
                let mut out = Vec::new();
                for (key, value) in m.iter() {
                    let path = child_path(self.path, key.as_str());
                    if let Some(v) = f(key.as_str(), Field { node: value, path: &path }, w) {
                        out.push(v);
                    }
                }
                Some(out)
            }
            other => {
                w.error(other.span(), self.path, "expected a mapping");
                None
            }
        }
    }

    /// Call `f` for each item of a sequence, with the item and its path.
    pub fn each<T>(
        self,
        w: &mut Walker,
        mut f: impl FnMut(Field<'_>, &mut Walker) -> Option<T>,
    ) -> Option<Vec<T>> {
        match self.node {
            Node::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, item) in seq.iter().enumerate() {
                    let path = format!("{}[{i}]", self.path);
                    if let Some(v) = f(Field { node: item, path: &path }, w) {
                        out.push(v);
                    }
                }
                Some(out)
            }
            other => {
                w.error(other.span(), self.path, "expected a list");
                None
            }
        }
    }
}
