//! The schema and the statements, shared by both backends. Placeholders are `$1..$n` in order
//! of first use, which PostgreSQL and SQLite (as named parameters) both bind by position.

/// Versioned migrations, applied in order on open; each runs once, in a transaction.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE audit_entries (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        request_id TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        subject TEXT,
        groups_json TEXT NOT NULL,
        model TEXT,
        decision TEXT,
        rules_json TEXT NOT NULL,
        status BIGINT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (chain, seq)
    );
    CREATE INDEX audit_entries_request ON audit_entries (request_id);
    CREATE INDEX audit_entries_time ON audit_entries (at_ms);
    CREATE INDEX audit_entries_subject ON audit_entries (subject, at_ms);
    CREATE TABLE audit_checkpoints (
        chain TEXT NOT NULL,
        n BIGINT NOT NULL,
        size BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (chain, n)
    );
    CREATE TABLE audit_anchors (
        chain TEXT PRIMARY KEY,
        note TEXT NOT NULL
    );
    CREATE TABLE revocations (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        at_s BIGINT NOT NULL,
        until_s BIGINT NOT NULL,
        PRIMARY KEY (kind, value)
    );",
    ),
    (
        2,
        // Held requests. `body` is the exact upstream body, kept only while it may still be
        // forwarded (pending, approved) and cleared on every other state; `view` is the
        // masked copy reviewers read.
        "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        subject TEXT NOT NULL,
        groups_json TEXT NOT NULL,
        rule TEXT NOT NULL,
        approvers_json TEXT NOT NULL,
        model TEXT,
        stream BIGINT NOT NULL,
        mode TEXT NOT NULL,
        body TEXT,
        body_hash TEXT NOT NULL,
        view TEXT NOT NULL,
        state TEXT NOT NULL,
        decided_by TEXT,
        reason TEXT,
        decided_ms BIGINT,
        instance TEXT NOT NULL
    );
    CREATE INDEX approvals_state ON approvals (state, created_ms);
    CREATE INDEX approvals_ticket ON approvals (subject, body_hash);",
    ),
    (
        3,
        // Standing grants: one identity's requests under one rule pass without a hold until
        // `until_ms`, unless revoked.
        "CREATE TABLE approval_grants (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        rule TEXT NOT NULL,
        approvers_json TEXT NOT NULL,
        approval_id TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        until_ms BIGINT NOT NULL,
        revoked_by TEXT,
        revoked_ms BIGINT
    );
    CREATE INDEX approval_grants_subject ON approval_grants (subject, rule);",
    ),
];

pub const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS airlock_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)";
pub const SCHEMA_VERSIONS: &str = "SELECT version FROM airlock_schema";
pub const SCHEMA_RECORD: &str = "INSERT INTO airlock_schema (version, applied_ms) VALUES ($1, $2)";

pub const ENTRY_COLUMNS: &str = "chain, seq, kind, request_id, at_ms, subject, groups_json, model, \
     decision, rules_json, status, body, prev_hash, hash";

pub const INSERT_ENTRY: &str = "INSERT INTO audit_entries (chain, seq, kind, request_id, at_ms, \
     subject, groups_json, model, decision, rules_json, status, body, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

pub const HEAD: &str =
    "SELECT seq, hash FROM audit_entries WHERE chain = $1 ORDER BY seq DESC LIMIT 1";

/// `request` entries of a chain with neither `response` nor `interrupted` after them.
pub const UNFINISHED: &str = "SELECT request_id, subject, groups_json, model, decision, rules_json \
     FROM audit_entries a WHERE a.chain = $1 AND a.kind = 'request' AND NOT EXISTS \
     (SELECT 1 FROM audit_entries b WHERE b.chain = a.chain AND b.request_id = a.request_id \
     AND b.kind IN ('response', 'interrupted')) ORDER BY a.seq";

pub const INSERT_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoints (chain, n, size, at_ms, note) VALUES ($1, $2, $3, $4, $5)";
pub const LAST_CHECKPOINT: &str =
    "SELECT n, note FROM audit_checkpoints WHERE chain = $1 ORDER BY n DESC LIMIT 1";
pub const CHECKPOINTS: &str = "SELECT note FROM audit_checkpoints WHERE chain = $1 ORDER BY n";

pub const CHAINS: &str = "SELECT chain FROM audit_entries GROUP BY chain \
     UNION SELECT chain FROM audit_checkpoints GROUP BY chain ORDER BY 1";

pub const ANCHOR: &str = "SELECT note FROM audit_anchors WHERE chain = $1";
pub const DELETE_ANCHOR: &str = "DELETE FROM audit_anchors WHERE chain = $1";
pub const INSERT_ANCHOR: &str = "INSERT INTO audit_anchors (chain, note) VALUES ($1, $2)";
pub const PRUNE: &str = "DELETE FROM audit_entries WHERE chain = $1 AND seq <= $2";

pub const REVOKE: &str = "INSERT INTO revocations (kind, value, at_s, until_s) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (kind, value) DO UPDATE SET at_s = excluded.at_s, until_s = excluded.until_s";
pub const REVOCATIONS: &str =
    "SELECT kind, value, at_s, until_s FROM revocations WHERE until_s >= $1 ORDER BY kind, value";
pub const FORGET_REVOCATIONS: &str = "DELETE FROM revocations WHERE until_s < $1";

/// `LIKE` pattern for a JSON array column containing `value` as an element.
pub fn contains_element(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    let escaped: String = quoted
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '!' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

pub const APPROVAL_COLUMNS: &str = "id, request_id, created_ms, expires_ms, subject, groups_json, \
     rule, approvers_json, model, stream, mode, body_hash, view, state, decided_by, reason, \
     decided_ms, instance";
pub const INSERT_APPROVAL: &str = "INSERT INTO approvals (id, request_id, created_ms, expires_ms, \
     subject, groups_json, rule, approvers_json, model, stream, mode, body_hash, view, state, \
     decided_by, reason, decided_ms, instance, body) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";
/// Decide a pending approval that has not expired; a denial forgets the body at once.
pub const DECIDE_APPROVAL: &str = "UPDATE approvals SET state = $1, decided_by = $2, reason = $3, \
     decided_ms = $4, body = CASE WHEN $1 = 'approved' THEN body ELSE NULL END \
     WHERE id = $5 AND state = 'pending' AND expires_ms > $4";
/// Move an approval from one of the listed states to a final one, forgetting its body.
pub const FINISH_APPROVAL: &str = "UPDATE approvals SET state = $1, body = NULL, \
     decided_ms = COALESCE(decided_ms, $2) WHERE id = $3 AND state = $4";
pub const EXPIRE_APPROVALS: &str = "UPDATE approvals SET state = 'expired', body = NULL, \
     decided_ms = $1 WHERE state = 'pending' AND expires_ms <= $1";
/// Approved tickets past their window.
pub const EXPIRE_TICKETS: &str = "UPDATE approvals SET state = 'expired', body = NULL \
     WHERE state = 'approved' AND mode = 'ticket' AND decided_ms + (expires_ms - created_ms) <= $1";
/// Approved holds nobody claimed by `$1` (their gateway is gone): never sent.
pub const ABANDON_UNCLAIMED: &str = "UPDATE approvals SET state = 'abandoned', body = NULL \
     WHERE state IN ('approved', 'forwarding') AND mode = 'wait' AND decided_ms <= $1";
/// Holds of a gateway that restarted: their clients' calls died with it.
pub const ABANDON_INSTANCE: &str = "UPDATE approvals SET state = 'abandoned', body = NULL, \
     decided_ms = COALESCE(decided_ms, $1) WHERE instance = $2 AND mode = 'wait' \
     AND state IN ('pending', 'approved', 'forwarding')";
pub const CLAIM_APPROVAL: &str =
    "UPDATE approvals SET state = 'forwarding' WHERE id = $1 AND state = 'approved'";
pub const APPROVAL_BODY: &str = "SELECT body FROM approvals WHERE id = $1";
/// An approved ticket of this identity for this exact body, still inside its window (the
/// rule's timeout, counted from the decision).
pub const FIND_TICKET: &str = "SELECT id, state FROM approvals WHERE subject = $1 AND \
     body_hash = $2 AND rule = $3 AND mode = 'ticket' AND ((state = 'approved' AND \
     decided_ms + (expires_ms - created_ms) > $4) OR (state = 'pending' AND expires_ms > $4)) \
     ORDER BY created_ms LIMIT 1";

pub const GRANT_COLUMNS: &str = "id, subject, rule, approvers_json, approval_id, granted_by, \
     created_ms, until_ms, revoked_by, revoked_ms";
pub const INSERT_GRANT: &str = "INSERT INTO approval_grants (id, subject, rule, approvers_json, \
     approval_id, granted_by, created_ms, until_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub const ACTIVE_GRANT: &str = "SELECT id FROM approval_grants WHERE subject = $1 AND rule = $2 \
     AND until_ms > $3 AND revoked_ms IS NULL ORDER BY until_ms DESC LIMIT 1";
pub const REVOKE_GRANT: &str = "UPDATE approval_grants SET revoked_by = $1, revoked_ms = $2 \
     WHERE id = $3 AND revoked_ms IS NULL";
