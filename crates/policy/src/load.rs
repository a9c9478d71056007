//! The policy file → a compiled [`Policy`]. Every error is collected with its line.

use crate::glob::Glob;
use crate::parts::Part;
use crate::{
    Action, Allowance, DEFAULT_APPROVAL_TIMEOUT, HoldMode, Mode, OnDisallowedTool, OverLimit,
    Policy, Rule, ToolCall, When,
};
use airlock_config::ConfigErrors;
use airlock_config::yaml::{Field, Map, Walker};
use airlock_detect::{
    Category, Detector, Pack, PackOptions, Pattern, Strategy, builtins, category_alias,
    pseudonym_detector, validate,
};
use marked_yaml::Node;
use regex_automata::meta;
use regex_automata::util::syntax;
use std::sync::Arc;
use std::time::Duration;

/// Reads a file a policy imports (a path as written in the policy), or says why not.
pub type Reader<'a> = &'a dyn Fn(&str) -> Result<String, String>;

pub(crate) fn parse(source: &str, text: &str, read: Reader<'_>) -> Result<Policy, ConfigErrors> {
    let mut w = Walker::new(source);
    let root = w.load(text);
    let policy = root.as_ref().and_then(|node| {
        let mut m = Map::root(node, &mut w)?;
        let p = walk(&mut m, &mut w, read);
        m.finish(&mut w);
        p
    });
    let mut policy = w.finish(policy)?;
    policy.version = version_of(text);
    policy.source = source.to_owned();
    Ok(policy)
}

/// `sha256:` and the first 16 hex digits of the file's SHA-256: what audit records carry.
pub fn version_of(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

struct Catalogue {
    /// Built-ins then the file's own detectors.
    all: Vec<Detector>,
}

impl Catalogue {
    /// A detector name or a category (`pii`, `secrets`) → indexes into `all`.
    fn resolve(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(cat) = category_alias(name) {
            return Some((0..self.all.len()).filter(|&i| self.all[i].category == cat).collect());
        }
        self.all.iter().position(|d| d.name == name).map(|i| vec![i])
    }

    fn names(&self) -> String {
        let mut n: Vec<&str> = self.all.iter().map(|d| d.name.as_str()).collect();
        n.extend(["pii", "secrets"]);
        n.join(", ")
    }
}

fn walk(m: &mut Map<'_>, w: &mut Walker, read: Reader<'_>) -> Option<Policy> {
    m.field("version", w, |f, w| f.u64_in(w, 1, 1));
    let mut catalogue = Catalogue { all: builtins() };
    if let Some(custom) = m.field("detectors", w, |f, w| f.entries(w, custom_detector)) {
        for d in custom {
            if catalogue.all.iter().any(|b| b.name == d.name) || category_alias(&d.name).is_some() {
                // Reported by name; the walker has no span here, so say where to look.
                w.error(
                    &marked_yaml::Span::new_blank(),
                    "detectors",
                    format!("`{}` is a built-in name", d.name),
                );
                continue;
            }
            catalogue.all.push(d);
        }
    }
    let options = m
        .field("masking", w, |f, w| {
            let mut mm = f.mapping(w)?;
            let mut o = PackOptions::default();
            if let Some(n) = mm.field("max_match_bytes", w, |f, w| f.bytes_in(w, 64, 4096)) {
                o.max_match_bytes = n as usize;
            }
            if let Some(n) = mm.field("max_run_hold_bytes", w, |f, w| f.bytes_in(w, 1024, 1 << 20))
            {
                o.max_run_hold_bytes = n as usize;
            }
            mm.finish(w);
            Some(o)
        })
        .unwrap_or_default();
    let mut warnings = Vec::new();
    let imports = m
        .field("import_gitleaks", w, |f, w| {
            f.each(w, |item, w| {
                let (file, max_repeat) = match item.node {
                    Node::Scalar(_) => (item.non_empty_string(w)?, 16),
                    _ => {
                        let mut im = item.mapping(w)?;
                        let file = im.field("file", w, |f, w| f.non_empty_string(w));
                        let max =
                            im.field("max_repeat", w, |f, w| f.u64_in(w, 1, 1024)).unwrap_or(16);
                        im.finish(w);
                        (file?, max as u32)
                    }
                };
                let text = match read(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        w.error(item.span(), item.path(), e);
                        return None;
                    }
                };
                match crate::gitleaks::import(&text, max_repeat, options) {
                    Ok((detectors, skipped)) => {
                        Some((file, detectors, skipped, *item.span(), item.path().to_owned()))
                    }
                    Err(e) => {
                        w.error(item.span(), item.path(), format!("{file}: {e}"));
                        None
                    }
                }
            })
        })
        .unwrap_or_default();
    for (file, detectors, skipped, span, path) in imports {
        warnings.extend(skipped.into_iter().map(|s| format!("{file}: rule {s}; skipped")));
        for d in detectors {
            if catalogue.resolve(&d.name).is_some() {
                w.error(
                    &span,
                    &path,
                    format!("{file}: rule id `{}` is already a detector name", d.name),
                );
                continue;
            }
            catalogue.all.push(d);
        }
    }
    let rego = m.field("rego", w, |f, w| {
        let mut r = f.mapping(w)?;
        let query = r
            .field("query", w, |f, w| f.non_empty_string(w))
            .unwrap_or_else(|| "data.airlock.decision".into());
        let timeout = r
            .field("timeout", w, |f, w| {
                f.duration_in(w, Duration::from_millis(1), Duration::from_secs(1))
            })
            .unwrap_or(Duration::from_millis(20));
        let module = r.field("module", w, |f, w| {
            let text = f.non_empty_string(w)?;
            match crate::rego::Rego::compile(&text, String::new(), timeout) {
                Ok(_) => Some(text),
                Err(e) => {
                    w.error(f.span(), f.path(), format!("invalid Rego module: {e}"));
                    None
                }
            }
        });
        let span = *r.span();
        let path = r.path().to_owned();
        r.finish(w);
        match module {
            Some(text) => crate::rego::Rego::compile(&text, query, timeout).ok(),
            None => {
                if !w.has_errors() {
                    w.error(&span, &path, "rego needs a `module`");
                }
                None
            }
        }
    });
    let groups = m
        .field("groups", w, |f, w| {
            f.entries(w, |name, f, w| Some((name.to_owned(), allowance(f, w)?)))
        })
        .unwrap_or_default();
    let redact =
        m.field("redact_request", w, |f, w| strategies(f, w, &catalogue, true)).unwrap_or_default();
    let mask =
        m.field("mask_response", w, |f, w| strategies(f, w, &catalogue, false)).unwrap_or_default();
    let on_disallowed_tool = m
        .field("tools", w, |f, w| {
            let mut tm = f.mapping(w)?;
            let v = tm.field("on_disallowed", w, |f, w| {
                one_of(
                    f,
                    w,
                    &[("strip", OnDisallowedTool::Strip), ("deny", OnDisallowedTool::Deny)],
                )
            });
            tm.finish(w);
            v
        })
        .unwrap_or(OnDisallowedTool::Strip);
    let raw_rules =
        m.field("rules", w, |f, w| f.each(w, |f, w| rule(f, w, &catalogue))).unwrap_or_default();
    let limits = m.field("limits", w, |f, w| f.each(w, crate::limits::limit)).unwrap_or_default();
    for (i, l) in limits.iter().enumerate() {
        if limits[..i].iter().any(|o| o.id == l.id) {
            w.error(
                &marked_yaml::Span::new_blank(),
                "limits",
                format!("limit id `{}` is used twice", l.id),
            );
        }
    }
    let mut ids: Vec<&str> = Vec::new();
    for (r, span) in &raw_rules {
        if ids.contains(&r.id.as_str()) {
            w.error(span, "rules", format!("rule id `{}` is used twice", r.id));
        }
        ids.push(&r.id);
    }
    if w.has_errors() {
        return None;
    }

    // The detection pack: every detector, built-in and custom, with the redaction strategy
    // where one is given. Rules and redaction use the detectors they name; the audit copy
    // masks everything any detector finds (one scan serves both). Pack indexes are
    // catalogue indexes, so the rules' detector lists need no remapping.
    let strategy_of = |i: usize| {
        redact.iter().find(|(j, _)| *j == i).map(|(_, s)| *s).unwrap_or(Strategy::Placeholder)
    };
    let detect_list: Vec<(Detector, Strategy)> =
        catalogue.all.iter().enumerate().map(|(i, d)| (d.clone(), strategy_of(i))).collect();
    let detect = match Pack::build(&detect_list, options) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            w.error(&marked_yaml::Span::new_blank(), "detectors", e.to_string());
            return None;
        }
    };
    let mut mask_list: Vec<(Detector, Strategy)> =
        mask.iter().map(|(i, s)| (catalogue.all[*i].clone(), *s)).collect();
    if redact.iter().any(|(_, s)| *s == Strategy::Pseudonym) {
        mask_list.insert(0, (pseudonym_detector(), Strategy::Restore));
    }
    let mask = if mask_list.is_empty() {
        None
    } else {
        match Pack::build(&mask_list, options) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                w.error(&marked_yaml::Span::new_blank(), "mask_response", e.to_string());
                return None;
            }
        }
    };
    let redact_flags = {
        let mut v = vec![false; catalogue.all.len()];
        redact.iter().for_each(|(i, _)| v[*i] = true);
        v
    };
    let rules = raw_rules.into_iter().map(|(r, _)| r).collect();
    Some(Policy {
        version: String::new(),
        source: String::new(),
        groups,
        on_disallowed_tool,
        detect,
        redact: redact_flags,
        mask,
        rules,
        limits,
        cache: Default::default(),
        rego,
        warnings,
    })
}

/// A string that must be one of `options`; anything else is an error naming them.
fn one_of<T: Copy>(f: Field<'_>, w: &mut Walker, options: &[(&str, T)]) -> Option<T> {
    let s = f.string(w)?;
    let found = options.iter().find(|(name, _)| *name == s).map(|(_, v)| *v);
    if found.is_none() {
        let names: Vec<String> = options.iter().map(|(n, _)| format!("`{n}`")).collect();
        w.error(f.span(), f.path(), format!("expected {}", names.join(" or ")));
    }
    found
}

fn custom_detector(name: &str, f: Field<'_>, w: &mut Walker) -> Option<Detector> {
    let mut m = f.mapping(w)?;
    let category = m
        .field("category", w, |f, w| {
            one_of(f, w, &[("pii", Category::Pii), ("secret", Category::Secret)])
        })
        .unwrap_or(Category::Pii);
    let validator = m.field("validator", w, |f, w| {
        let s = f.string(w)?;
        let v = validate::by_name(&s);
        if v.is_none() {
            w.error(
                f.span(),
                f.path(),
                format!("unknown validator; expected one of: {}", validate::NAMES.join(", ")),
            );
        }
        v
    });
    let confidence =
        m.field("confidence", w, |f, w| f.u64_in(w, 0, 100)).map_or(0.8, |n| n as f32 / 100.0);
    let regex = m.field("regex", w, |f, w| {
        let s = f.non_empty_string(w)?;
        check_regex(&s, f, w).then_some(s)
    });
    let keywords = m.field("keywords", w, |f, w| f.string_list(w));
    let span = *m.span();
    let path = m.path().to_owned();
    m.finish(w);
    let patterns = match (regex, keywords) {
        (Some(r), None) => {
            vec![Pattern::Regex { regex: r, validator, group: 0, confidence, run: None }]
        }
        (None, Some(k)) if !k.is_empty() => vec![Pattern::Keywords(k)],
        _ => {
            w.error(&span, &path, "a detector needs either `regex` or a non-empty `keywords` list");
            return None;
        }
    };
    // Build it alone now, so a pattern too long for streaming is reported at its line.
    let d = Detector { name: name.to_owned(), category, patterns };
    if let Err(e) = Pack::build(&[(d.clone(), Strategy::Placeholder)], PackOptions::default()) {
        w.error(&span, &path, e.message);
        return None;
    }
    Some(d)
}

fn check_regex(pattern: &str, f: Field<'_>, w: &mut Walker) -> bool {
    match build_regexes(&[pattern.to_owned()]) {
        Ok(_) => true,
        Err(e) => {
            w.error(f.span(), f.path(), format!("invalid regex: {e}"));
            false
        }
    }
}

pub(crate) fn build_regexes(patterns: &[String]) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(meta::Config::new().hybrid_cache_capacity(4 << 20))
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// `[email, phone]` or `[email, {credit_card: partial}]` → detector indexes with strategies.
fn strategies(
    f: Field<'_>,
    w: &mut Walker,
    cat: &Catalogue,
    request: bool,
) -> Option<Vec<(usize, Strategy)>> {
    let items = f.each(w, |item, w| {
        let (name, strategy) = match item.node {
            Node::Scalar(_) => (item.non_empty_string(w)?, Strategy::Placeholder),
            Node::Mapping(_) => {
                let pairs = item.entries(w, |name, v, w| {
                    let s = v.string(w)?;
                    match Strategy::parse(&s) {
                        Some(Strategy::Pseudonym) if !request => {
                            w.error(v.span(), v.path(), "pseudonyms are for requests; responses use placeholder, partial or hash");
                            None
                        }
                        Some(st) => Some((name.to_owned(), st)),
                        None => {
                            w.error(v.span(), v.path(), "expected placeholder, partial, hash or pseudonym");
                            None
                        }
                    }
                })?;
                if pairs.len() != 1 {
                    w.error(item.span(), item.path(), "write one `detector: strategy` per item");
                    return None;
                }
                pairs.into_iter().next()?
            }
            _ => {
                w.error(item.span(), item.path(), "expected a detector name or `name: strategy`");
                return None;
            }
        };
        match cat.resolve(&name) {
            Some(ids) => Some(ids.into_iter().map(|i| (i, strategy)).collect::<Vec<_>>()),
            None => {
                w.error(item.span(), item.path(), format!("unknown detector `{name}`; known: {}", cat.names()));
                None
            }
        }
    })?;
    let mut out: Vec<(usize, Strategy)> = Vec::new();
    for (i, s) in items.into_iter().flatten() {
        // A later, more specific entry wins over a category named earlier.
        out.retain(|(j, _)| *j != i);
        out.push((i, s));
    }
    Some(out)
}

fn allowance(f: Field<'_>, w: &mut Walker) -> Option<Allowance> {
    let mut m = f.mapping(w)?;
    let globs = |f: Field<'_>, w: &mut Walker| {
        Some(f.string_list(w)?.iter().map(|g| Glob::new(g)).collect::<Vec<_>>())
    };
    let a = Allowance {
        models: m.field("models", w, globs).unwrap_or_else(|| vec![Glob::new("*")]),
        max_prompt_tokens: m.field("max_prompt_tokens", w, |f, w| f.u64_in(w, 1, u64::MAX)),
        max_prompt_bytes: m.field("max_prompt_bytes", w, |f, w| f.bytes_in(w, 1, u64::MAX)),
        max_output_tokens: m.field("max_output_tokens", w, |f, w| f.u64_in(w, 1, u64::MAX)),
        on_max_output_tokens: m
            .field("on_max_output_tokens", w, |f, w| {
                one_of(f, w, &[("clamp", OverLimit::Clamp), ("deny", OverLimit::Deny)])
            })
            .unwrap_or(OverLimit::Clamp),
        streaming: m.field("streaming", w, |f, w| f.bool(w)).unwrap_or(true),
        thinking: m.field("thinking", w, |f, w| f.bool(w)).unwrap_or(true),
        images: m.field("images", w, |f, w| f.bool(w)).unwrap_or(true),
        documents: m.field("documents", w, |f, w| f.bool(w)).unwrap_or(true),
        tools: m.field("tools", w, globs).unwrap_or_else(|| vec![Glob::new("*")]),
    };
    m.finish(w);
    Some(a)
}

fn names_list(f: Field<'_>, w: &mut Walker, cat: &Catalogue) -> Option<Vec<usize>> {
    let names = f.string_list(w)?;
    let mut out = Vec::new();
    for n in names {
        match cat.resolve(&n) {
            Some(ids) => out.extend(ids),
            None => w.error(
                f.span(),
                f.path(),
                format!("unknown detector `{n}`; known: {}", cat.names()),
            ),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn rule(f: Field<'_>, w: &mut Walker, cat: &Catalogue) -> Option<(Rule, marked_yaml::Span)> {
    let span = *f.span();
    let mut m = f.mapping(w)?;
    let id = m.field("id", w, |f, w| f.non_empty_string(w));
    let action = m.field("action", w, |f, w| {
        let s = f.string(w)?;
        let a = Action::parse(&s);
        if a.is_none() {
            w.error(f.span(), f.path(), "expected allow, deny, redact or require_approval");
        }
        a
    });
    let mode = m
        .field("mode", w, |f, w| {
            let s = f.string(w)?;
            let a = Mode::parse(&s);
            if a.is_none() {
                w.error(f.span(), f.path(), "expected enforce, warn or dry_run");
            }
            a
        })
        .unwrap_or(Mode::Enforce);
    let message = m.field("message", w, |f, w| f.non_empty_string(w));
    let approvers = m.field("approvers", w, |f, w| f.string_list(w)).unwrap_or_default();
    let timeout = m.field("timeout", w, |f, w| {
        f.duration_in(w, Duration::from_secs(1), Duration::from_secs(7 * 86400))
    });
    let hold = m.field("hold", w, |f, w| {
        let s = f.string(w)?;
        let h = HoldMode::parse(&s);
        if h.is_none() {
            w.error(f.span(), f.path(), "expected wait or ticket");
        }
        h
    });
    let redact = m.field("redact", w, |f, w| names_list(f, w, cat));
    let when = m.field("when", w, |f, w| when(f, w, cat));
    let path = m.path().to_owned();
    m.finish(w);
    let (id, action, when) = (id?, action?, when?);
    if action == Action::RequireApproval && approvers.is_empty() {
        w.error(&span, &path, "require_approval needs `approvers` (a group; never the requester)");
    }
    if action != Action::RequireApproval
        && (!approvers.is_empty() || timeout.is_some() || hold.is_some())
    {
        w.error(&span, &path, "`approvers`, `timeout` and `hold` are for require_approval rules");
    }
    if redact.is_some() && action != Action::Redact {
        w.error(&span, &path, "`redact` is for redact rules");
    }
    if when.tool_call.is_some() {
        if when.is_request_only() {
            w.error(&span, &path, "a tool_call rule is judged on the response: it can add only groups, not_groups and models");
        }
        if !matches!(action, Action::Deny | Action::Allow) {
            w.error(&span, &path, "a tool_call rule's action is deny or allow");
        }
    }
    let redact = match (action, redact) {
        (Action::Redact, Some(r)) => r,
        (Action::Redact, None) if !when.detected.is_empty() => when.detected.clone(),
        (Action::Redact, None) => {
            w.error(
                &span,
                &path,
                "a redact rule needs `redact: [detectors]` or a `detected` condition",
            );
            Vec::new()
        }
        _ => Vec::new(),
    };
    let hold = hold.unwrap_or(HoldMode::Wait);
    let timeout = timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
    Some((Rule { id, action, mode, message, approvers, timeout, hold, redact, when }, span))
}

fn when(f: Field<'_>, w: &mut Walker, cat: &Catalogue) -> Option<When> {
    let mut m = f.mapping(w)?;
    let globs = |f: Field<'_>, w: &mut Walker| {
        Some(f.string_list(w)?.iter().map(|g| Glob::new(g)).collect::<Vec<_>>())
    };
    let regexes = |f: Field<'_>, w: &mut Walker| {
        let list = f.string_list(w)?;
        match build_regexes(&list) {
            Ok(r) => Some(r),
            Err(e) => {
                w.error(f.span(), f.path(), format!("invalid regex: {e}"));
                None
            }
        }
    };
    let detected = m.field("detected", w, |f, w| names_list(f, w, cat)).unwrap_or_default();
    let matches = m.field("matches", w, regexes);
    let keywords = m.field("keywords", w, |f, w| {
        let list = f.string_list(w)?;
        aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(&list).ok()
    });
    let parts = m.field("in", w, |f, w| {
        let list = f.string_list(w)?;
        let mut out = Vec::new();
        for p in list {
            match Part::parse(&p) {
                Some(p) => out.push(p),
                None => w.error(f.span(), f.path(), format!("unknown part `{p}`; expected system, user, assistant, tool_results or tool_inputs")),
            }
        }
        Some(out)
    });
    let groups = m.field("groups", w, |f, w| f.string_list(w)).unwrap_or_default();
    let not_groups = m.field("not_groups", w, |f, w| f.string_list(w)).unwrap_or_default();
    let models = m.field("models", w, globs).unwrap_or_default();
    let prompt_tokens_over = m.field("prompt_tokens_over", w, |f, w| f.u64_in(w, 0, u64::MAX));
    let prompt_bytes_over = m.field("prompt_bytes_over", w, |f, w| f.bytes_in(w, 0, u64::MAX));
    let tools_offered = m.field("tools_offered", w, globs).unwrap_or_default();
    let tool_call = m.field("tool_call", w, |f, w| {
        let mut t = f.mapping(w)?;
        let name = t.field("name", w, |f, w| f.non_empty_string(w)).map(|g| Glob::new(&g));
        let input = t.field("input_matches", w, |f, w| {
            let s = f.non_empty_string(w)?;
            match build_regexes(&[s]) {
                Ok(r) => Some(r),
                Err(e) => {
                    w.error(f.span(), f.path(), format!("invalid regex: {e}"));
                    None
                }
            }
        });
        t.finish(w);
        Some(ToolCall { name, input })
    });
    let span = *m.span();
    let path = m.path().to_owned();
    m.finish(w);
    let when = When {
        detected,
        matches,
        keywords,
        parts: parts.unwrap_or_else(|| Part::ALL.to_vec()),
        groups,
        not_groups,
        models,
        prompt_tokens_over,
        prompt_bytes_over,
        tools_offered,
        tool_call,
    };
    if when.is_empty() {
        w.error(
            &span,
            &path,
            "an empty `when` matches every request; write at least one condition",
        );
        return None;
    }
    Some(when)
}
