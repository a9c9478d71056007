//! Held requests: a `require_approval` decision stores the request and waits for a reviewer.
//!
//! ```text
//! pipeline ─► hold(): store {identity, rule, approvers, expiry, body hash, masked view, exact body}
//!   wait mode:   the call stays open (a stream gets `ping` events) while wait() polls the
//!                row (and wakes at once on a decision made through this instance)
//!                approved → claim the body (once: approved → forwarding → forwarded, body
//!                forgotten), check it against the hash computed here, forward it
//!                denied / expired / abandoned → 403 permission_error
//!   ticket mode: 403 naming the approval id at once; the same identity sending the same
//!                body (same hash) again after approval redeems it, once
//! ```
//!
//! Invariant: a held body is forwarded at most once, only after approval, and only by the
//! instance holding the client's call; the stored body must hash to what this instance
//! judged, so an edited row is refused, never forwarded.
//! Invariant: the stored body exists only while it may still be forwarded; every other state
//! forgets it (reviewers read the masked view).
//! Invariant: a held call whose client goes away is marked `abandoned` and never forwarded.

use crate::Gateway;
use crate::audit::Audit;
use crate::record::{ApprovalNote, RequestRecord};
use crate::reject::{Fault, Rejection};
use airlock_config::{ApprovalWebhook, ApprovalsConfig, WebhookFormat};
use airlock_policy::{Hold, HoldMode};
use airlock_store::{Approval, now_ms};
use airlock_wire::ErrorType;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// How often a held call re-reads its approval (a decision made on another instance is seen
/// within this bound; one made through this instance wakes it at once).
pub const POLL: Duration = Duration::from_millis(250);

/// This instance's side of the approval queue.
#[derive(Debug, Default)]
pub struct Approvals {
    /// Woken after every decision made through this instance's admin API.
    changed: Arc<tokio::sync::Notify>,
    notifier: Option<Arc<Notifier>>,
}

impl Approvals {
    pub fn new(config: &ApprovalsConfig) -> Result<Approvals, crate::UpstreamSetupError> {
        let notifier = if config.webhooks.is_empty() {
            None
        } else {
            Some(Arc::new(Notifier {
                fetcher: crate::fetch::Fetcher::new(WEBHOOK_DEADLINE)?,
                link: config.link.clone(),
                webhooks: config.webhooks.clone(),
            }))
        };
        Ok(Approvals { changed: Arc::default(), notifier })
    }

    /// Wake everything waiting on the queue (held calls, the web UI's live list).
    pub fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next change made through this instance.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// One webhook request may take this long.
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(10);

/// Announces held requests to reviewers: each matching webhook gets the approval's id,
/// requester, rule and link, retried with exponential backoff. Delivery never touches the
/// held request: a webhook that is down loses a notification, never the approval.
#[derive(Debug)]
struct Notifier {
    fetcher: crate::fetch::Fetcher,
    link: Option<String>,
    webhooks: Vec<ApprovalWebhook>,
}

impl Notifier {
    fn announce(self: &Arc<Self>, a: &Approval, audit: Audit) {
        let link = self.link.as_ref().map(|l| l.replace("{id}", &a.id));
        for (i, hook) in self.webhooks.iter().enumerate() {
            if !hook.rules.is_empty() && !hook.rules.contains(&a.rule) {
                continue;
            }
            let body = match hook.format {
                WebhookFormat::Json => json_message(a, link.as_deref()),
                WebhookFormat::Slack => slack_message(a, link.as_deref()),
            };
            let (this, audit, id, request_id) =
                (Arc::clone(self), audit.clone(), a.id.clone(), a.request_id.clone());
            tokio::spawn(async move {
                let hook = &this.webhooks[i];
                let mut delay = Duration::from_secs(1);
                let mut attempts = 0;
                let delivered = loop {
                    attempts += 1;
                    match this.fetcher.post_json(&hook.url, body.to_string()).await {
                        Ok(r) if r.status.is_success() => break true,
                        Ok(r) => {
                            tracing::warn!(target: "airlock::approvals", status = r.status.as_u16(), attempts, "approval webhook refused a notification")
                        }
                        Err(e) => {
                            tracing::warn!(target: "airlock::approvals", error = %e, attempts, "approval webhook unreachable")
                        }
                    }
                    if attempts >= hook.max_attempts {
                        break false;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                };
                audit.event(
                    &id,
                    None,
                    serde_json::json!({
                        "event": "approval_notified",
                        "request_id": request_id,
                        "webhook": i,
                        "delivered": delivered,
                        "attempts": attempts,
                    }),
                );
            });
        }
    }
}

fn json_message(a: &Approval, link: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "event": "approval_requested",
        "approval_id": a.id,
        "request_id": a.request_id,
        "requester": a.subject,
        "groups": a.groups,
        "rule": a.rule,
        "approvers": a.approvers,
        "model": a.model,
        "mode": a.mode,
        "expires_ms": a.expires_ms,
        "body_sha256": a.body_hash,
        "link": link,
    })
}

/// Slack's incoming-webhook shape: `text` (the fallback) and one section block. Names are
/// escaped for Slack's mrkdwn (`&`, `<`, `>`), so a subject cannot inject a link or mention.
fn slack_message(a: &Approval, link: Option<&str>) -> serde_json::Value {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let open = match link {
        Some(l) => format!("<{}|Review it>", esc(l)),
        None => format!("`airlock approvals show {}`", a.id),
    };
    let text = format!(
        "Approval needed: *{}* sent a request that rule `{}` holds for {} ({}). {open}",
        esc(&a.subject),
        esc(&a.rule),
        esc(&a.approvers.join(", ")),
        a.model.as_deref().map(esc).unwrap_or_else(|| "no model".into()),
    );
    serde_json::json!({
        "text": text,
        "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }],
    })
}

/// A request this instance holds.
#[derive(Debug)]
pub struct Held {
    pub id: String,
    /// SHA-256 (hex) of the body as judged here: what the stored body must still hash to.
    hash: String,
    deadline: tokio::time::Instant,
    /// Marks the approval abandoned if the call ends before it is settled.
    abandon: Abandon,
}

/// Marks a still-open approval `abandoned` when dropped (the client went away).
#[derive(Debug)]
struct Abandon {
    audit: Audit,
    /// The queue's change signal: an abandoned hold is a change too.
    changed: Arc<tokio::sync::Notify>,
    id: String,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (audit, id, changed) =
            (self.audit.clone(), std::mem::take(&mut self.id), self.changed.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(async move {
            let now = now_ms();
            let r = audit
                .read(move |s| {
                    Ok(s.finish_approval(&id, "pending", "abandoned", now)?
                        || s.finish_approval(&id, "approved", "abandoned", now)?)
                })
                .await;
            match r {
                Ok(true) => changed.notify_waiters(),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(target: "airlock::approvals", error = %e, "could not mark an approval abandoned");
                }
            }
        });
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_id() -> String {
    let mut seed = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
    format!("apr_{}", seed.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn store_down() -> Rejection {
    Rejection::new(
        ErrorType::Api,
        "the approval queue is unavailable; the request was not sent",
        Fault::Internal,
        "approval_store_unavailable",
    )
    .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
}

fn refused(message: String, reason: &'static str) -> Rejection {
    Rejection::new(ErrorType::Permission, message, Fault::Client, reason)
}

/// What the pipeline does with a held request.
#[derive(Debug)]
pub enum Start {
    /// Wait for a reviewer (wait mode).
    Wait(Box<Held>),
    /// Forward it now: an approved ticket for this exact body, or a standing grant.
    Pass,
}

/// Hold `body` (the exact bytes that would go upstream) for a reviewer; ticket mode answers
/// at once (the returned rejection names the approval), or redeems an approved ticket.
pub async fn hold(
    gw: &Gateway,
    record: &mut RequestRecord,
    hold: &Hold,
    subject: &str,
    body: &Bytes,
    view: String,
) -> Result<Start, Rejection> {
    let audit = gw.audit.clone().ok_or_else(store_down)?;
    let text = std::str::from_utf8(body).map_err(|_| store_down())?.to_owned();
    let hash = sha256_hex(body);
    let now = now_ms();
    let mode = hold.mode;
    let mut note = ApprovalNote {
        id: String::new(),
        rule: hold.rule.clone(),
        mode: mode.as_str(),
        state: "pending",
        decided_by: None,
        reason: None,
        body_hash: hash.clone(),
        waited_ms: 0,
    };
    // A standing grant for this identity and rule: no hold.
    let (s, r) = (subject.to_owned(), hold.rule.clone());
    let grant =
        audit.read(move |st| st.active_grant(&s, &r, now)).await.map_err(|_| store_down())?;
    if let Some(grant) = grant {
        note.id = grant;
        note.state = "granted";
        record.data.approval = Some(note);
        return Ok(Start::Pass);
    }
    if mode == HoldMode::Ticket {
        let (s, h, r) = (subject.to_owned(), hash.clone(), hold.rule.clone());
        let found = audit
            .read(move |st| {
                let found = st.find_ticket(&s, &h, &r, now)?;
                if let Some((id, state)) = &found
                    && state == "approved"
                    && !st.finish_approval(id, "approved", "forwarded", now)?
                {
                    return Ok(None);
                }
                Ok(found)
            })
            .await
            .map_err(|_| store_down())?;
        if let Some((id, state)) = found {
            note.id = id.clone();
            if state == "approved" {
                note.state = "redeemed";
                record.data.approval = Some(note);
                return Ok(Start::Pass);
            }
            record.data.approval = Some(note);
            return Err(ticket_refusal(hold, &id));
        }
    }
    let id = new_id();
    let approval = Approval {
        id: id.clone(),
        request_id: record.data.request_id.clone(),
        created_ms: now,
        expires_ms: now + hold.timeout.as_millis() as i64,
        subject: subject.to_owned(),
        groups: record.data.groups.clone(),
        rule: hold.rule.clone(),
        approvers: hold.approvers.clone(),
        model: record.data.model.clone(),
        stream: record.data.stream,
        mode: mode.as_str().to_owned(),
        body_hash: hash.clone(),
        view,
        state: "pending".into(),
        decided_by: None,
        reason: None,
        decided_ms: None,
        instance: audit.chain().to_owned(),
    };
    let announced = approval.clone();
    // A ticket's body is never forwarded from storage: its request brings it again.
    let stored = (mode == HoldMode::Wait).then_some(text);
    audit.read(move |s| s.hold(&approval, stored.as_deref())).await.map_err(|e| {
        tracing::error!(target: "airlock::approvals", error = %e, "cannot store a held request");
        store_down()
    })?;
    if let Some(n) = &gw.approvals.notifier {
        n.announce(&announced, audit.clone());
    }
    gw.approvals.notify_changed();
    note.id = id.clone();
    record.data.approval = Some(note);
    tracing::info!(target: "airlock::approvals", request_id = %record.data.request_id, approval = %id, rule = %hold.rule, "request held for approval");
    if mode == HoldMode::Ticket {
        return Err(ticket_refusal(hold, &id));
    }
    Ok(Start::Wait(Box::new(Held {
        id: id.clone(),
        hash,
        deadline: tokio::time::Instant::now() + hold.timeout,
        abandon: Abandon { audit, id, changed: gw.approvals.changed.clone(), armed: true },
    })))
}

fn ticket_refusal(hold: &Hold, id: &str) -> Rejection {
    let message = hold.message.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
    refused(
        format!(
            "held for approval by policy rule `{}` (approval {id}); once a reviewer in {} approves, send the identical request again within {}.{message}",
            hold.rule,
            hold.approvers.join(", "),
            airlock_config::format_duration(hold.timeout),
        ),
        "approval_ticket",
    )
}

/// Wait until the held request is decided; on approval, the stored body (checked against
/// the hash computed when it was judged), claimed once.
pub async fn wait(
    gw: &Gateway,
    held: &mut Held,
    record: &mut RequestRecord,
) -> Result<Bytes, Rejection> {
    let audit = gw.audit.clone().ok_or_else(store_down)?;
    let started = tokio::time::Instant::now();
    let outcome = loop {
        let notified = gw.approvals.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let id = held.id.clone();
        let Ok(Some(a)) = audit.read(move |s| s.approval(&id)).await else {
            break Err(store_down());
        };
        match a.state.as_str() {
            "pending" if tokio::time::Instant::now() >= held.deadline => {
                let id = held.id.clone();
                let now = now_ms();
                // Expire it unless a decision got there first (then read that).
                let _ =
                    audit.read(move |s| s.finish_approval(&id, "pending", "expired", now)).await;
                continue;
            }
            "pending" => {}
            "approved" => {
                let id = held.id.clone();
                let now = now_ms();
                let body = audit.read(move |s| s.claim_approved_body(&id, now)).await;
                note_decision(record, &a, "approved");
                break match body {
                    Ok(Some(body)) if sha256_hex(body.as_bytes()) == held.hash => {
                        Ok(Bytes::from(body))
                    }
                    Ok(Some(_)) => {
                        tracing::error!(target: "airlock::approvals", approval = %held.id, "stored body does not match the body judged; refused");
                        Err(refused(
                            "the approved request was altered in storage; it was not sent".into(),
                            "approval_body_mismatch",
                        ))
                    }
                    Ok(None) => Err(refused(
                        "the approved request was already sent".into(),
                        "approval_already_claimed",
                    )),
                    Err(_) => Err(store_down()),
                };
            }
            "denied" => {
                note_decision(record, &a, "denied");
                let by = a.decided_by.as_deref().unwrap_or("a reviewer");
                let why = a.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                break Err(refused(format!("request denied by {by}{why}"), "approval_denied"));
            }
            "expired" => {
                note_decision(record, &a, "expired");
                break Err(refused("approval timed out".into(), "approval_expired"));
            }
            _ => {
                note_decision(record, &a, "abandoned");
                break Err(refused("the approval is no longer open".into(), "approval_closed"));
            }
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(POLL) => {}
            () = tokio::time::sleep_until(held.deadline) => {}
        }
    };
    if let Some(n) = &mut record.data.approval {
        n.waited_ms = started.elapsed().as_millis() as u64;
    }
    // Settled: nothing left to abandon.
    held.abandon.armed = false;
    outcome
}

fn note_decision(record: &mut RequestRecord, a: &Approval, state: &'static str) {
    if let Some(n) = &mut record.data.approval {
        n.state = state;
        n.decided_by = a.decided_by.clone();
        n.reason = a.reason.clone();
    }
}

/// An approved hold not claimed this long after the decision has lost its gateway.
const CLAIM_WINDOW: Duration = Duration::from_secs(60);

/// At start, before serving: abandon what this instance held before it stopped (those calls
/// died with it; a hold is never sent after a restart).
pub async fn abandon_earlier(audit: &Audit) {
    let (instance, now) = (audit.chain().to_owned(), now_ms());
    match audit.read(move |s| s.abandon_instance(&instance, now)).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(target: "airlock::approvals", n, "holds from before the restart abandoned")
        }
        Err(e) => {
            tracing::warn!(target: "airlock::approvals", error = %e, "cannot abandon earlier holds")
        }
    }
}

/// Every second until `stop`: expire pending approvals past their deadline and tickets past
/// their window, and abandon approved holds nobody claimed — whichever instance held them.
pub async fn sweep(audit: Audit, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(POLL * 4) => {}
        }
        let now = now_ms();
        let window = CLAIM_WINDOW.as_millis() as i64;
        if let Err(e) = audit.read(move |s| s.expire_approvals(now, window)).await {
            tracing::warn!(target: "airlock::approvals", error = %e, "cannot expire approvals");
        }
    }
}

/// Who is calling the approvals API.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub identity: &'a airlock_authn::Identity,
    /// Admins see every approval; deciding still needs the rule's approver group.
    pub admin: bool,
}

impl Caller<'_> {
    fn reviews(&self, a: &Approval) -> bool {
        a.approvers.iter().any(|g| self.identity.groups().contains(g))
    }

    pub(crate) fn sees(&self, a: &Approval) -> bool {
        self.admin || self.reviews(a)
    }

    /// May decide `a`: in one of its approver groups, and never its requester.
    pub(crate) fn may_decide(&self, a: &Approval) -> Result<(), Rejection> {
        if !self.reviews(a) {
            return Err(refused(
                format!("only members of {} may decide this request", a.approvers.join(", ")),
                "approval_not_a_reviewer",
            ));
        }
        if a.subject == self.identity.subject() {
            return Err(refused(
                "the requester can never approve their own request".into(),
                "approval_self",
            ));
        }
        Ok(())
    }
}

/// One approval as the API shows it (the view only when asked for one approval).
fn approval_json(a: &Approval, caller: Caller<'_>, with_view: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": a.id,
        "request_id": a.request_id,
        "state": a.state,
        "mode": a.mode,
        "requester": { "subject": a.subject, "groups": a.groups },
        "rule": a.rule,
        "approvers": a.approvers,
        "model": a.model,
        "stream": a.stream,
        "body_sha256": a.body_hash,
        "created_ms": a.created_ms,
        "expires_ms": a.expires_ms,
        "decided_by": a.decided_by,
        "reason": a.reason,
        "decided_ms": a.decided_ms,
        "instance": a.instance,
        "can_decide": a.state == "pending" && caller.may_decide(a).is_ok(),
    });
    if with_view && let Some(o) = v.as_object_mut() {
        let view = serde_json::from_str(&a.view).unwrap_or(serde_json::Value::Null);
        o.insert("request".into(), view);
    }
    v
}

fn not_found() -> Rejection {
    Rejection::new(ErrorType::NotFound, "no such approval", Fault::Client, "approval_not_found")
}

fn valid_id(id: &str) -> bool {
    id.len() == 28 && id.starts_with("apr_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GET /admin/approvals[?state=pending&limit=N]`, `GET /admin/approvals/{id}`,
/// `POST /admin/approvals/{id}/approve|deny` with `{"reason": "..."}` (required to deny).
pub(crate) async fn api(
    gw: &Gateway,
    parts: &http::request::Parts,
    body: hyper::body::Incoming,
    caller: Caller<'_>,
    record: &mut RequestRecord,
) -> Result<(&'static str, serde_json::Value), Rejection> {
    use http::Method;
    let audit = gw.audit.clone().ok_or_else(store_down)?;
    let rest = parts.uri.path().trim_start_matches("/admin/approvals");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, []) => {
            let (mut state, mut limit) = (Some("pending".to_owned()), 100u64);
            for pair in parts.uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=').unwrap_or((pair, "")) {
                    ("state", "all") => state = None,
                    ("state", s) if is_state(s) => state = Some(s.to_owned()),
                    ("limit", n) => {
                        limit = n.parse::<u64>().map_err(|_| bad("`limit` must be a number"))?;
                        limit = limit.clamp(1, 1000);
                    }
                    _ => return Err(bad("query keys: state (a state or `all`), limit")),
                }
            }
            let list = audit
                .read(move |s| s.approvals(state.as_deref(), limit))
                .await
                .map_err(|_| store_down())?;
            let shown: Vec<_> = list
                .iter()
                .filter(|a| caller.sees(a))
                .map(|a| approval_json(a, caller, false))
                .collect();
            Ok(("admin_approvals_list", serde_json::json!({ "approvals": shown })))
        }
        (&Method::GET, ["grants"]) => {
            let all = parts.uri.query() == Some("all=1");
            let now = now_ms();
            let list = audit.read(move |s| s.grants(now, all)).await.map_err(|_| store_down())?;
            let shown: Vec<_> = list
                .iter()
                .filter(|g| {
                    caller.admin || g.approvers.iter().any(|a| caller.identity.groups().contains(a))
                })
                .map(grant_json)
                .collect();
            Ok(("admin_grants_list", serde_json::json!({ "grants": shown })))
        }
        (&Method::POST, ["grants", id, "revoke"]) => {
            let now = now_ms();
            let gid = (*id).to_owned();
            let g = audit.read(move |s| s.grant(&gid)).await.map_err(|_| store_down())?;
            let Some(g) = g else { return Err(not_found()) };
            if !caller.admin && !g.approvers.iter().any(|a| caller.identity.groups().contains(a)) {
                return Err(not_found());
            }
            let (gid, by) = (g.id.clone(), caller.identity.subject().to_owned());
            let done = audit
                .read(move |s| s.revoke_grant(&gid, &by, now))
                .await
                .map_err(|_| store_down())?;
            if !done {
                return Err(conflict("the grant is already revoked"));
            }
            Ok(("admin_grant_revoked", serde_json::json!({ "id": g.id, "revoked": true })))
        }
        (&Method::GET, [id]) => {
            let a = load(&audit, id).await?;
            if !caller.sees(&a) {
                return Err(not_found());
            }
            Ok(("admin_approvals_show", approval_json(&a, caller, true)))
        }
        (&Method::POST, [id, verb @ ("approve" | "deny")]) => {
            let approve = *verb == "approve";
            let json = crate::admin::read_json(body, &parts.headers, gw).await?;
            let reason = crate::admin::str_field(&json, "reason")?;
            let grant = crate::admin::str_field(&json, "grant")?;
            decide(gw, caller, id, approve, reason, grant.as_deref(), record).await
        }
        _ => Err(Rejection::not_found(parts.uri.path())),
    }
}

/// Approve or deny approval `id` as `caller` (the admin API and the web UI): the caller must
/// see it and may decide it; one decision wins (the same one repeated by the same reviewer
/// answers as before); an approval may add a standing grant (`grant`, a duration up to 24h).
pub(crate) async fn decide(
    gw: &Gateway,
    caller: Caller<'_>,
    id: &str,
    approve: bool,
    reason: Option<String>,
    grant: Option<&str>,
    record: &mut RequestRecord,
) -> Result<(&'static str, serde_json::Value), Rejection> {
    let audit = gw.audit.clone().ok_or_else(store_down)?;
    if !approve && reason.is_none() {
        return Err(bad("a denial needs a `reason` (the requester sees it)"));
    }
    let grant = match grant {
        None => None,
        Some(_) if !approve => return Err(bad("`grant` is for approvals")),
        Some(t) => match airlock_config::parse_duration(t) {
            Ok(d) if d > Duration::ZERO && d <= MAX_GRANT => Some(d),
            _ => return Err(bad("`grant` is a duration up to 24h, e.g. 30m")),
        },
    };
    let a = load(&audit, id).await?;
    if !caller.sees(&a) {
        return Err(not_found());
    }
    caller.may_decide(&a)?;
    let by = caller.identity.subject().to_owned();
    let (aid, who, why, now) = (a.id.clone(), by.clone(), reason.clone(), now_ms());
    let won = audit
        .read(move |s| s.decide(&aid, approve, &who, why.as_deref(), now))
        .await
        .map_err(|_| store_down())?;
    let a = load(&audit, id).await?;
    let state = if approve { "approved" } else { "denied" };
    record.data.approval = Some(ApprovalNote {
        id: a.id.clone(),
        rule: a.rule.clone(),
        mode: if a.mode == "ticket" { "ticket" } else { "wait" },
        state,
        decided_by: Some(by.clone()),
        reason: reason.clone(),
        body_hash: a.body_hash.clone(),
        waited_ms: 0,
    });
    // The same decision by the same reviewer again is answered as before (idempotent);
    // anything else is a conflict: someone else decided first, or it expired.
    let repeated = a.decided_by.as_deref() == Some(by.as_str())
        && (a.state == state
            || (approve && matches!(a.state.as_str(), "forwarding" | "forwarded")));
    if !won && !repeated {
        return Err(conflict(&format!("the approval is already {}", a.state)));
    }
    let mut answer = approval_json(&a, caller, false);
    if won {
        if let Some(d) = grant {
            let g = airlock_store::Grant {
                id: new_id().replacen("apr_", "grt_", 1),
                subject: a.subject.clone(),
                rule: a.rule.clone(),
                approvers: a.approvers.clone(),
                approval_id: a.id.clone(),
                granted_by: by.clone(),
                created_ms: now,
                until_ms: now + d.as_millis() as i64,
                revoked_by: None,
                revoked_ms: None,
            };
            let json = grant_json(&g);
            audit.read(move |s| s.add_grant(&g)).await.map_err(|_| store_down())?;
            if let Some(o) = answer.as_object_mut() {
                o.insert("grant".into(), json);
            }
        }
        gw.approvals.notify_changed();
        tracing::info!(target: "airlock::approvals", approval = %a.id, decided_by = %by, state, "approval decided");
    }
    let reason = match (approve, grant.is_some()) {
        (true, true) => "admin_approval_approved_with_grant",
        (true, false) => "admin_approval_approved",
        (false, _) => "admin_approval_denied",
    };
    Ok((reason, answer))
}

/// A standing grant lasts at most this long.
const MAX_GRANT: Duration = Duration::from_secs(24 * 3600);

fn grant_json(g: &airlock_store::Grant) -> serde_json::Value {
    serde_json::json!({
        "id": g.id,
        "subject": g.subject,
        "rule": g.rule,
        "approvers": g.approvers,
        "approval_id": g.approval_id,
        "granted_by": g.granted_by,
        "created_ms": g.created_ms,
        "until_ms": g.until_ms,
        "revoked_by": g.revoked_by,
        "revoked_ms": g.revoked_ms,
    })
}

fn conflict(message: &str) -> Rejection {
    Rejection::new(
        ErrorType::InvalidRequest,
        message.to_owned(),
        Fault::Client,
        "approval_conflict",
    )
    .with_status(http::StatusCode::CONFLICT)
}

fn bad(message: &str) -> Rejection {
    Rejection::bad_request(message.to_owned(), "bad_admin_request")
}

fn is_state(s: &str) -> bool {
    matches!(
        s,
        "pending" | "approved" | "denied" | "expired" | "abandoned" | "forwarding" | "forwarded"
    )
}

async fn load(audit: &Audit, id: &str) -> Result<Approval, Rejection> {
    if !valid_id(id) {
        return Err(not_found());
    }
    let id = id.to_owned();
    audit.read(move |s| s.approval(&id)).await.map_err(|_| store_down())?.ok_or_else(not_found)
}
