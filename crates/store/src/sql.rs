//! The schema and the statements, shared by both backends. Placeholders are `$1..$n` in order
//! of first use, which PostgreSQL and SQLite (as named parameters) both bind by position.

/// Versioned migrations, applied in order on open; each runs once, in a transaction.
pub const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

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
