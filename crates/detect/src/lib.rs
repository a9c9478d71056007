//! Airlock's detectors: built-in PII and secret detectors plus the policy's own, compiled
//! into one [`Pack`] (one combined automaton, validators on candidates only, keywords through
//! aho-corasick), the masking strategies, and the [`StreamMasker`] that masks text arriving in
//! pieces exactly as it would mask the whole text.
//!
//! Pure: no IO, no async.

mod builtin;
pub mod eval;
pub mod fuzz;
mod mask;
mod pack;
mod stream;
pub mod validate;

pub use builtin::{builtins, category_alias, pseudonym_detector};
pub use mask::{MaskKey, Pseudonyms, Strategy};
pub use pack::{BuildError, Pack, PackOptions};
pub use stream::StreamMasker;

/// What kind of value a detector finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Pii,
    Secret,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Pii => "pii",
            Category::Secret => "secret",
        }
    }
}

/// A detector as written: a name, a category and one or more patterns. Several patterns
/// under one name (the phone formats, say) report as that one name.
#[derive(Debug, Clone)]
pub struct Detector {
    pub name: String,
    pub category: Category,
    pub patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
pub enum Pattern {
    /// A regex (ASCII classes, bounded length). `group` > 0 reports only that capture
    /// group (the value of `password=…`, not the key name).
    Regex {
        regex: String,
        validator: Option<validate::Validator>,
        group: usize,
        confidence: f32,
        run: Option<RunEnd>,
    },
    /// Whole words, ASCII case-insensitive.
    Keywords(Vec<String>),
}

/// How a run detector's value ends once its bounded opener matched.
#[derive(Debug, Clone)]
pub enum RunEnd {
    /// At the first byte outside the class (a JWT's base64url and dots).
    Class(ByteSet),
    /// At the end of this bounded regex (a PEM block's END line); without one, at the end
    /// of the text.
    Terminator(String),
}

/// One value found: which detector (an index into [`Pack::detectors`]), where (byte offsets
/// into the text scanned), and how sure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub detector: usize,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

/// A compiled detector's identity.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: String,
    pub category: Category,
    pub strategy: Strategy,
    /// `EMAIL` for `email`: the text placeholders carry.
    pub label: String,
}

/// A set of bytes: the class a run continues over.
#[derive(Clone, PartialEq, Eq)]
pub struct ByteSet(std::sync::Arc<[bool; 256]>);

impl ByteSet {
    pub fn from_fn(f: impl Fn(u8) -> bool) -> ByteSet {
        let mut set = [false; 256];
        for b in 0..=255u8 {
            set[usize::from(b)] = f(b);
        }
        ByteSet(std::sync::Arc::new(set))
    }

    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b)]
    }
}

impl std::fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteSet({} bytes)", self.0.iter().filter(|b| **b).count())
    }
}
