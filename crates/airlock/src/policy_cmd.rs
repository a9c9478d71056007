//! `airlock policy`: check a policy file, run its test cases, explain a decision.
//!
//! Exit status: 0 valid / every case passed; 1 invalid / a case failed; 2 could not run.

use airlock_policy::{Policy, RejectKind};
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report every error with its line. Without FILE: the
    /// bundled policy.
    Check { file: Option<PathBuf> },
    /// Run test cases (identity + request or tool call → expected decision, rules,
    /// redactions). Without CASES: FILE's `<name>.tests.yaml` beside it; without FILE: the
    /// bundled policy and its cases.
    Test { file: Option<PathBuf>, cases: Vec<PathBuf> },
    /// Print the decision for one request and, rule by rule, which conditions held.
    Explain {
        /// The policy file (default: the bundled policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The caller's subject (what the Rego layer sees as `identity.subject`).
        #[arg(long, default_value = "policy-explain")]
        identity: String,
        /// The caller's groups, comma-separated.
        #[arg(long, default_value = "", value_delimiter = ',')]
        groups: Vec<String>,
        /// The Messages request body (JSON file; `-` for stdin).
        #[arg(long)]
        request: PathBuf,
    },
}

/// Runs the command; returns the process exit code.
pub fn run(command: PolicyCommand) -> anyhow::Result<i32> {
    match command {
        PolicyCommand::Check { file } => {
            let policy = match load(file.as_deref())? {
                Ok(p) => p,
                Err(errors) => {
                    eprint!("{errors}");
                    return Ok(1);
                }
            };
            let rules = policy.rules().count();
            for w in &policy.warnings {
                println!("warning: {w}");
            }
            println!("ok: {} ({}), {rules} rules", policy.source, policy.version);
            Ok(0)
        }
        PolicyCommand::Test { file, cases } => {
            let policy = match load(file.as_deref())? {
                Ok(p) => p,
                Err(errors) => {
                    eprint!("{errors}");
                    return Ok(1);
                }
            };
            let sources: Vec<(String, String)> = match (&file, cases.is_empty()) {
                (None, true) => {
                    vec![("bundled policy cases".into(), airlock_policy::BUNDLED_CASES.into())]
                }
                (Some(f), true) => {
                    let p = beside(f);
                    vec![(p.display().to_string(), read(&p)?)]
                }
                (_, false) => cases
                    .iter()
                    .map(|p| Ok((p.display().to_string(), read(p)?)))
                    .collect::<anyhow::Result<_>>()?,
            };
            let (mut passed, mut failed) = (0, 0);
            for (source, text) in sources {
                let reports = match airlock_policy::run_cases(&policy, &source, &text) {
                    Ok(r) => r,
                    Err(errors) => {
                        eprint!("{errors}");
                        return Ok(1);
                    }
                };
                for r in reports {
                    if r.failures.is_empty() {
                        passed += 1;
                        println!("PASS  {}", r.name);
                    } else {
                        failed += 1;
                        println!("FAIL  {}", r.name);
                        for f in r.failures {
                            println!("      {f}");
                        }
                    }
                }
            }
            println!("{passed} passed, {failed} failed ({})", policy.version);
            Ok(if failed == 0 { 0 } else { 1 })
        }
        PolicyCommand::Explain { policy, identity, groups, request } => {
            let policy = match load(policy.as_deref())? {
                Ok(p) => p,
                Err(errors) => {
                    eprint!("{errors}");
                    return Ok(2);
                }
            };
            let text = if request == Path::new("-") {
                std::io::read_to_string(std::io::stdin())?
            } else {
                read(&request)?
            };
            let body: serde_json::Map<String, Value> =
                serde_json::from_str(&text).context("the request is not a JSON object")?;
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            print!("{}", explain(&policy, &identity, &groups, &body, text.len()));
            Ok(0)
        }
    }
}

fn explain(
    policy: &Policy,
    subject: &str,
    groups: &[String],
    body: &serde_json::Map<String, Value>,
    len: usize,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut judged = body.clone();
    let key = airlock_detect::MaskKey::new(b"airlock policy explain");
    let mut v =
        policy.evaluate(groups, &mut judged, len, &key, &mut airlock_detect::Pseudonyms::default());
    let _ = writeln!(out, "policy:    {} ({})", policy.source, policy.version);
    if v.reject.is_none()
        && let Some(input) = policy.rego_input(subject, groups, &judged, &v)
    {
        let outcome = policy.rego_decide(&input);
        let shown = match &outcome {
            Ok(None) => "no opinion".to_owned(),
            Ok(Some(d)) => format!(
                "{}{}",
                d.action.as_str(),
                d.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            Err(e) => format!("error: {e} (fails closed)"),
        };
        let _ = writeln!(out, "rego:      {shown}");
        v.apply_rego(outcome);
    }
    let _ = writeln!(out, "decision:  {}", v.decision());
    if let Some(r) = &v.reject {
        let status = if r.kind == RejectKind::InvalidRequest { 400 } else { 403 };
        let _ = writeln!(out, "answer:    {status} {}", r.message);
    } else if let Some(h) = &v.hold {
        let _ = writeln!(
            out,
            "answer:    held by rule `{}` ({}) for {} up to {}",
            h.rule,
            h.mode.as_str(),
            h.approvers.join(", "),
            airlock_config::format_duration(h.timeout)
        );
    }
    let _ = writeln!(out, "tokens:    ~{} (estimated)", v.estimated_tokens);
    let findings = policy.findings(body);
    if !findings.is_empty() {
        let f: Vec<String> = findings.iter().map(|(d, n)| format!("{d}×{n}")).collect();
        let _ = writeln!(out, "found:     {}", f.join(", "));
    }
    if !v.redactions.is_empty() {
        let f: Vec<String> = v.redactions.iter().map(|(d, n)| format!("{d}×{n}")).collect();
        let _ = writeln!(out, "redacted:  {}", f.join(", "));
    }
    if let Some((from, to)) = v.clamped {
        let _ = writeln!(out, "clamped:   max_tokens {from} → {to}");
    }
    if !v.stripped_tools.is_empty() {
        let _ = writeln!(out, "stripped:  {}", v.stripped_tools.join(", "));
    }
    let _ = writeln!(out, "rules:");
    for t in policy.explain(groups, body, len) {
        let mark = if t.matched() { "MATCH" } else { "  -  " };
        let conds: Vec<String> = t
            .conditions
            .iter()
            .map(|(c, ok)| format!("{c} {}", if *ok { "✓" } else { "✗" }))
            .collect();
        let _ = writeln!(
            out,
            "  {mark} {} [{} {}] {}",
            t.id,
            t.action.as_str(),
            t.mode.as_str(),
            conds.join(", ")
        );
    }
    out
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `policy.yaml` → `policy.tests.yaml`.
fn beside(file: &Path) -> PathBuf {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    file.with_file_name(format!("{stem}.tests.yaml"))
}

/// The policy, or its errors (already formatted); `Err` only when the file cannot be read.
fn load(file: Option<&Path>) -> anyhow::Result<Result<Policy, String>> {
    Ok(match file {
        None => Ok(Policy::bundled()),
        Some(f) => {
            read(f)?;
            airlock_proxy::policy::parse_file(f)
        }
    })
}
