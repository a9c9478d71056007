//! Secret rules imported from a gitleaks-format TOML file (`[[rules]]` with `id`, `regex`,
//! optional `secretGroup` and `entropy`), so a team can reuse rule sets it already has.
//!
//! What carries over: each rule becomes a `secret` detector named by its `id`; `secretGroup`
//! picks the part masked; `entropy` turns on the high-entropy validator (a fixed threshold,
//! not the rule's number). What does not: `keywords` (the combined automaton needs no
//! prefilter), `path` rules (there are no files here), allowlists. Unbounded repeats (`+`,
//! `*`, `{n,}`) need care, because the streaming masker must know how far back a match can
//! start: a repetition of a character class that **ends** the pattern (the secret itself,
//! `([A-Za-z0-9]{32,})`) becomes a *run* — its minimum is matched, then the value extends to
//! the first byte outside the class, however long, so no tail of a secret leaks; every other
//! unbounded repetition (separators, context) is bounded to `max_repeat` extra characters. A
//! rule still longer than `max_match_bytes`, or whose regex Rust's engine does not accept, is
//! skipped and reported.

use airlock_detect::{
    ByteSet, Category, Detector, Pack, PackOptions, Pattern, RunEnd, Strategy, validate,
};
use regex_syntax::ast::{self, Ast, RepetitionKind, RepetitionRange};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    regex: Option<String>,
    #[serde(default)]
    secret_group: usize,
    entropy: Option<f64>,
}

/// The detectors a file yields, and each rule skipped with why.
pub fn import(
    text: &str,
    max_repeat: u32,
    options: PackOptions,
) -> Result<(Vec<Detector>, Vec<String>), String> {
    let file: File = toml::from_str(text).map_err(|e| format!("not a gitleaks TOML file: {e}"))?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for rule in file.rules {
        let Some(regex) = rule.regex else {
            skipped.push(format!("{}: no regex (path rules do not apply)", rule.id));
            continue;
        };
        let (bounded, run) = match bound(&regex, max_repeat) {
            Ok(r) => r,
            Err(e) => {
                skipped.push(format!("{}: {e}", rule.id));
                continue;
            }
        };
        let d = Detector {
            name: rule.id.clone(),
            category: Category::Secret,
            patterns: vec![Pattern::Regex {
                regex: format!("(?-u){bounded}"),
                validator: rule.entropy.map(|_| validate::high_entropy as validate::Validator),
                group: rule.secret_group,
                confidence: 0.8,
                run: run.map(RunEnd::Class),
            }],
        };
        match Pack::build(&[(d.clone(), Strategy::Placeholder)], options) {
            Ok(_) => out.push(d),
            Err(e) => skipped.push(format!("{}: {}", rule.id, e.message)),
        }
    }
    Ok((out, skipped))
}

/// `regex` with a trailing unbounded class repetition turned into a run (its class
/// returned), and every other unbounded repetition given an upper bound `extra` above its
/// minimum.
fn bound(regex: &str, extra: u32) -> Result<(String, Option<ByteSet>), String> {
    let mut parsed = ast::parse::Parser::new().parse(regex).map_err(|e| format!("regex: {e}"))?;
    let run = trailing_run(&mut parsed)?;
    fn walk(a: &mut Ast, extra: u32) {
        match a {
            Ast::Repetition(r) => {
                if let Some(min) = unbounded_min(&r.op.kind) {
                    r.op.kind = RepetitionKind::Range(RepetitionRange::Bounded(min, min + extra));
                }
                walk(&mut r.ast, extra);
            }
            Ast::Group(g) => walk(&mut g.ast, extra),
            Ast::Alternation(alt) => alt.asts.iter_mut().for_each(|x| walk(x, extra)),
            Ast::Concat(c) => c.asts.iter_mut().for_each(|x| walk(x, extra)),
            _ => {}
        }
    }
    walk(&mut parsed, extra);
    Ok((print(&parsed)?, run))
}

/// The minimum of a repetition with no maximum (`*`, `+`, `{n,}`); `None` if it is bounded.
fn unbounded_min(kind: &RepetitionKind) -> Option<u32> {
    match kind {
        RepetitionKind::ZeroOrMore => Some(0),
        RepetitionKind::OneOrMore => Some(1),
        RepetitionKind::Range(RepetitionRange::AtLeast(n)) => Some(*n),
        _ => None,
    }
}

fn print(a: &Ast) -> Result<String, String> {
    let mut out = String::new();
    ast::print::Printer::new().print(a, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// If the pattern ends (after zero-width assertions, inside a trailing group) with an
/// unbounded repetition of one character class, match only its minimum (at least one) and
/// return the class: the value runs on over it.
fn trailing_run(a: &mut Ast) -> Result<Option<ByteSet>, String> {
    match a {
        Ast::Concat(c) => {
            while c.asts.last().is_some_and(|x| matches!(x, Ast::Assertion(_))) {
                c.asts.pop();
            }
            match c.asts.last_mut() {
                Some(last) => trailing_run(last),
                None => Ok(None),
            }
        }
        Ast::Group(g) => trailing_run(&mut g.ast),
        Ast::Repetition(r) => {
            let Some(min) = unbounded_min(&r.op.kind) else { return Ok(None) };
            let is_class = matches!(
                &*r.ast,
                Ast::ClassBracketed(_)
                    | Ast::ClassPerl(_)
                    | Ast::ClassUnicode(_)
                    | Ast::Dot(_)
                    | Ast::Literal(_)
            );
            if !is_class {
                return Ok(None);
            }
            let class = print(&r.ast)?;
            let re = regex_automata::meta::Builder::new()
                .syntax(regex_automata::util::syntax::Config::new().unicode(false).utf8(false))
                .build(&format!("^(?:{class})$"))
                .map_err(|e| e.to_string())?;
            let set = ByteSet::from_fn(|b| re.is_match(regex_automata::Input::new(&[b][..])));
            let n = min.max(1);
            r.op.kind = RepetitionKind::Range(RepetitionRange::Exactly(n));
            Ok(Some(set))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unbounded_repeats_are_bounded() {
        for (from, to, run) in [
            (r"a+b*c{3,}", r"a{1,65}b{0,64}c{3}", true),
            (r"(?i)key\s*=\s*([a-z0-9]+)\b", r"(?i)key\s{0,64}=\s{0,64}([a-z0-9]{1})", true),
            (r"x{2,5}y?", r"x{2,5}y?", false),
            (r"(ab)+", r"(ab){1,65}", false),
        ] {
            let (got, class) = super::bound(from, 64).unwrap();
            assert_eq!((got.as_str(), class.is_some()), (to, run), "{from}");
        }
        let (_, class) = super::bound(r"k=([A-Za-z0-9+/]{32,})", 8).unwrap();
        let class = class.unwrap();
        assert!(
            class.contains(b'+')
                && class.contains(b'Z')
                && !class.contains(b'"')
                && !class.contains(b' ')
        );
    }
}
