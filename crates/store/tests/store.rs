//! The store on both backends: a temporary SQLite file, and a fresh schema in the PostgreSQL
//! database at AIRLOCK_TEST_POSTGRES_URL (`.ci/run` and `scripts/test` point it at the local
//! server).

use airlock_audit::{ChainReport, Draft, Index, Kind, VerifierKey};
use airlock_authn::SessionKeys;
use airlock_config::StoreUrl;
use airlock_store::{Approval, Param, Revocation, Store, Writer, WriterOptions, audit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh SQLite file and a fresh PostgreSQL schema.
fn backends() -> Vec<StoreUrl> {
    let dir = std::env::temp_dir().join(unique("airlock-store-"));
    // A directory of this name was left by an exited process (pids are reused): start empty.
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite = StoreUrl::Sqlite(dir.join("audit.db"));
    let pg = std::env::var("AIRLOCK_TEST_POSTGRES_URL")
        .expect("AIRLOCK_TEST_POSTGRES_URL must name a PostgreSQL database (scripts/test sets it)");
    let schema = unique("t");
    let mut admin = postgres::Client::connect(&pg, postgres::NoTls).expect("PostgreSQL reachable");
    // Names carry the pid, and pids are reused: a schema of that name was left by a test
    // process that has exited, never by a live one.
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if pg.contains('?') { '&' } else { '?' };
    vec![sqlite, StoreUrl::Postgres(format!("{pg}{sep}options=-csearch_path%3D{schema}"))]
}

fn options(chain: &str) -> WriterOptions {
    WriterOptions {
        chain: chain.to_owned(),
        checkpoint_every: 5,
        checkpoint_interval: Duration::from_secs(3600),
        checkpoint_file: None,
        max_batch: 64,
        window: Duration::ZERO,
        short_slice: false,
    }
}

fn draft(kind: Kind, id: &str, subject: &str) -> Draft {
    Draft {
        kind,
        request_id: id.to_owned(),
        at_ms: 1_800_000_000_000,
        index: Index {
            subject: Some(subject.to_owned()),
            groups: vec!["eng".into(), "50%_off".into()],
            model: Some("claude-x".into()),
            decision: Some("allow".into()),
            rules: vec!["r1".into()],
            status: (kind != Kind::Request).then_some(200),
        },
        detail: airlock_audit::detail(&serde_json::json!({ "route": "messages" })),
    }
}

/// Start a writer on `url`, write `n` requests (request + response entries), close it.
fn write_requests(url: &StoreUrl, key: &SessionKeys, chain: &str, n: usize) {
    let key = SessionKeys::from_pem(&key.to_pem()).unwrap();
    let writer = Writer::start(url, key, options(chain), None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        for i in 0..n {
            writer.append(draft(Kind::Request, &format!("r{i}"), "alice")).await.unwrap();
            writer.append_detached(draft(Kind::Response, &format!("r{i}"), "alice"));
        }
    });
    writer.close();
}

fn verify(url: &StoreUrl, key: &SessionKeys, external: &[String]) -> Vec<ChainReport> {
    let mut store = Store::open(url).unwrap();
    audit::verify(&mut store, &[VerifierKey::of(key)], external).unwrap()
}

/// The first problem's sequence number (Some(None) = a problem not tied to an entry).
fn first_bad(reports: &[ChainReport]) -> Option<Option<u64>> {
    reports.iter().find_map(|r| r.problem.as_ref().map(|p| p.seq))
}

#[test]
fn written_chains_verify_and_are_searchable() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let chain = unique("c");
        write_requests(&url, &key, &chain, 12);
        let reports = verify(&url, &key, &[]);
        assert_eq!(first_bad(&reports), None, "{url:?}: {reports:?}");
        let report = reports.iter().find(|r| r.chain == chain).unwrap();
        assert_eq!(report.entries, 24);
        // Start, every 5 entries, and stop.
        assert!(report.checkpoints_checked >= 5, "{report:?}");
        assert!(report.incomplete.is_empty());

        let mut store = Store::open(&url).unwrap();
        let found = |store: &mut Store, q: airlock_store::Query| store.search(&q).unwrap().len();
        let all = airlock_store::Query { limit: 1000, ..Default::default() };
        assert_eq!(found(&mut store, all.clone()), 24);
        let by = |f: fn(&mut airlock_store::Query)| {
            let mut q = all.clone();
            f(&mut q);
            q
        };
        assert_eq!(found(&mut store, by(|q| q.group = Some("eng".into()))), 24);
        // LIKE wildcards in a group name match only themselves.
        assert_eq!(found(&mut store, by(|q| q.group = Some("50%_off".into()))), 24);
        assert_eq!(found(&mut store, by(|q| q.group = Some("%".into()))), 0);
        assert_eq!(found(&mut store, by(|q| q.group = Some("en".into()))), 0);
        assert_eq!(found(&mut store, by(|q| q.subject = Some("bob".into()))), 0);
        assert_eq!(found(&mut store, by(|q| q.request_id = Some("r3".into()))), 2);
        assert_eq!(found(&mut store, by(|q| q.rule = Some("r1".into()))), 24);
        assert_eq!(found(&mut store, by(|q| q.since_ms = Some(1_900_000_000_000))), 0);
    }
}

/// Each kind of tampering, done with SQL on the stored rows, is reported at its entry.
#[test]
fn tampering_is_detected_on_both_stores() {
    type Tamper = (&'static str, &'static str, Option<Option<u64>>);
    let cases: &[Tamper] = &[
        (
            "edit a body",
            "UPDATE audit_entries SET body = replace(body, 'messages', 'xessages') WHERE chain = $1 AND seq = 7",
            Some(Some(7)),
        ),
        (
            "edit a column",
            "UPDATE audit_entries SET subject = 'mallory' WHERE chain = $1 AND seq = 4",
            Some(Some(4)),
        ),
        (
            "delete an entry",
            "DELETE FROM audit_entries WHERE chain = $1 AND seq = 9",
            Some(Some(9)),
        ),
        (
            "insert an entry",
            "UPDATE audit_entries SET request_id = 'forged', body = replace(body, '\"r5\"', '\"forged\"') WHERE chain = $1 AND seq = 11",
            Some(Some(11)),
        ),
        (
            "reorder entries",
            "UPDATE audit_entries SET seq = 0 - seq WHERE chain = $1 AND seq = 13; UPDATE audit_entries SET seq = 13 WHERE chain = $1 AND seq = 14; UPDATE audit_entries SET seq = 14 WHERE chain = $1 AND seq = -13",
            Some(Some(13)),
        ),
        (
            "truncate the tail",
            "DELETE FROM audit_entries WHERE chain = $1 AND seq > 17",
            Some(Some(18)),
        ),
    ];
    for url in backends() {
        for (what, sql, expected) in cases {
            let key = SessionKeys::generate().unwrap();
            let chain = unique("t");
            write_requests(&url, &key, &chain, 10);
            let mut store = Store::open(&url).unwrap();
            for statement in sql.split("; ") {
                store.execute(statement, &[Param::Text(chain.clone())]).unwrap();
            }
            let reports = verify(&url, &key, &[]);
            let report: Vec<ChainReport> =
                reports.into_iter().filter(|r| r.chain == chain).collect();
            assert_eq!(first_bad(&report), *expected, "{what} on {url:?}: {report:?}");
        }
    }
}

/// A tail truncated together with its stored checkpoints is caught by the checkpoint file.
#[test]
fn truncation_with_checkpoints_removed_is_caught_by_the_checkpoint_file() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let chain = unique("f");
        let file = std::env::temp_dir().join(unique("checkpoints-")).with_extension("jsonl");
        let writer = Writer::start(
            &url,
            SessionKeys::from_pem(&key.to_pem()).unwrap(),
            WriterOptions { checkpoint_file: Some(file.clone()), ..options(&chain) },
            None,
        )
        .unwrap();
        for i in 0..10 {
            writer.append_detached(draft(Kind::Record, &format!("r{i}"), "alice"));
        }
        writer.close();
        let mut store = Store::open(&url).unwrap();
        let c = Param::Text(chain.clone());
        store
            .execute(
                "DELETE FROM audit_entries WHERE chain = $1 AND seq > 6",
                std::slice::from_ref(&c),
            )
            .unwrap();
        store.execute("DELETE FROM audit_checkpoints WHERE chain = $1 AND size > 6", &[c]).unwrap();
        assert_eq!(first_bad(&verify(&url, &key, &[])), None, "undetectable without the file");
        let notes: Vec<String> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["note"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(first_bad(&verify(&url, &key, &notes)), Some(Some(7)));
        // A checkpoint signed by another key is refused, not ignored.
        let other = SessionKeys::generate().unwrap();
        let reports = verify(&url, &other, &[]);
        assert!(first_bad(&reports).is_some(), "{reports:?}");
    }
}

#[test]
fn a_restart_marks_unrecorded_responses_interrupted() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let chain = unique("i");
        let writer = Writer::start(
            &url,
            SessionKeys::from_pem(&key.to_pem()).unwrap(),
            options(&chain),
            None,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(writer.append(draft(Kind::Request, "lost", "alice"))).unwrap();
        writer.close();
        let report = verify(&url, &key, &[]).into_iter().find(|r| r.chain == chain).unwrap();
        assert_eq!(report.incomplete, vec!["lost".to_owned()]);
        // The next start appends `interrupted` for it.
        Writer::start(&url, SessionKeys::from_pem(&key.to_pem()).unwrap(), options(&chain), None)
            .unwrap()
            .close();
        let report = verify(&url, &key, &[]).into_iter().find(|r| r.chain == chain).unwrap();
        assert_eq!(report.problem, None);
        assert!(report.incomplete.is_empty());
        assert_eq!(report.interrupted, vec!["lost".to_owned()]);
    }
}

#[test]
fn one_writer_per_chain() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let chain = unique("b");
        let first = Writer::start(
            &url,
            SessionKeys::from_pem(&key.to_pem()).unwrap(),
            options(&chain),
            None,
        )
        .unwrap();
        let second = Writer::start(
            &url,
            SessionKeys::from_pem(&key.to_pem()).unwrap(),
            options(&chain),
            None,
        );
        assert!(matches!(second, Err(airlock_store::StoreError::ChainBusy(_))), "{url:?}");
        first.close();
    }
}

#[test]
fn pruning_keeps_the_chain_verifiable() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let chain = unique("p");
        write_requests(&url, &key, &chain, 10);
        let mut store = Store::open(&url).unwrap();
        let keys = [VerifierKey::of(&key)];
        let pruned = audit::prune(&mut store, &keys, u64::MAX).unwrap();
        let deleted = pruned.iter().find(|(c, _)| *c == chain).map(|(_, n)| *n).unwrap();
        assert!(deleted >= 15, "pruned to the last checkpoint: {pruned:?}");
        let report = verify(&url, &key, &[]).into_iter().find(|r| r.chain == chain).unwrap();
        assert_eq!(report.problem, None, "{report:?}");
        // A forged anchor does not verify.
        store
            .execute(
                "UPDATE audit_anchors SET note = replace(note, 'time', 'time 1') WHERE chain = $1",
                &[Param::Text(chain.clone())],
            )
            .unwrap();
        let report = verify(&url, &key, &[]).into_iter().find(|r| r.chain == chain).unwrap();
        assert!(report.problem.is_some());
    }
}

#[test]
fn revocations_round_trip() {
    for url in backends() {
        let mut store = Store::open(&url).unwrap();
        let value = unique("v");
        let r = Revocation { kind: "token".into(), value: value.clone(), at_s: 10, until_s: 100 };
        store.revoke(&r).unwrap();
        store.revoke(&Revocation { until_s: 200, ..r.clone() }).unwrap();
        store.revoke(&Revocation { value: unique("old"), until_s: 5, ..r.clone() }).unwrap();
        let listed = store.revocations(50).unwrap();
        assert_eq!(listed, vec![Revocation { until_s: 200, ..r.clone() }]);
        // The next write forgets entries past their horizon.
        store.revoke(&Revocation { value: unique("later"), at_s: 60, until_s: 300, ..r }).unwrap();
        let forgotten = store.execute("DELETE FROM revocations WHERE until_s < 60", &[]).unwrap();
        assert_eq!(forgotten, 0);
    }
}

fn held(id: &str, mode: &str, created_ms: i64) -> Approval {
    Approval {
        id: id.to_owned(),
        request_id: format!("req_{id}"),
        created_ms,
        expires_ms: created_ms + 1000,
        subject: "alice".into(),
        groups: vec!["eng".into()],
        rule: "codename-review".into(),
        approvers: vec!["security".into()],
        model: Some("claude-x".into()),
        stream: false,
        mode: mode.to_owned(),
        body_hash: format!("hash-{id}"),
        view: "{}".into(),
        state: "pending".into(),
        decided_by: None,
        reason: None,
        decided_ms: None,
        instance: "a".into(),
    }
}

/// Approvals: one decision wins, the body is handed out once and then forgotten, denials and
/// expiry forget it at once, tickets are found by identity + body hash inside their window.
#[test]
fn approvals_decide_once_and_release_the_body_once() {
    for url in backends() {
        let mut store = Store::open(&url).unwrap();
        let body = r#"{"model":"claude-x","messages":[]}"#;
        let a = held("a1", "wait", 1_000);
        store.hold(&a, Some(body)).unwrap();
        assert_eq!(store.approval("a1").unwrap().unwrap(), a);
        assert!(store.decide("a1", true, "bob", Some("ok"), 1_100).unwrap());
        assert!(!store.decide("a1", false, "carol", None, 1_101).unwrap(), "second decision");
        let got = store.approval("a1").unwrap().unwrap();
        assert_eq!((got.state.as_str(), got.decided_by.as_deref()), ("approved", Some("bob")));
        assert_eq!(store.claim_approved_body("a1", 1_200).unwrap().as_deref(), Some(body));
        assert_eq!(store.claim_approved_body("a1", 1_201).unwrap(), None, "claimed twice");
        assert_eq!(store.approval("a1").unwrap().unwrap().state, "forwarded");

        // Denied: the body is gone at once.
        store.hold(&held("a2", "wait", 1_000), Some(body)).unwrap();
        assert!(store.decide("a2", false, "bob", Some("no"), 1_100).unwrap());
        assert_eq!(store.claim_approved_body("a2", 1_200).unwrap(), None);
        // Expired: not decidable after its deadline; the sweep expires it.
        store.hold(&held("a3", "wait", 1_000), Some(body)).unwrap();
        assert!(!store.decide("a3", true, "bob", None, 2_000).unwrap(), "decided after expiry");
        assert_eq!(store.expire_approvals(2_000, 60_000).unwrap(), 1);
        assert_eq!(store.approval("a3").unwrap().unwrap().state, "expired");
        // Abandoned by its client.
        store.hold(&held("a4", "wait", 1_000), Some(body)).unwrap();
        assert!(store.finish_approval("a4", "pending", "abandoned", 1_050).unwrap());
        assert!(!store.decide("a4", true, "bob", None, 1_100).unwrap());
        // Only the two undecided-then-forwarded/denied states hold no body.
        let with_body =
            store.execute("UPDATE approvals SET body = body WHERE body IS NOT NULL", &[]).unwrap();
        assert_eq!(with_body, 0, "no approval keeps its body once it cannot be forwarded");

        // Tickets: found while pending, and approved inside the window, then redeemed once.
        store.hold(&held("t1", "ticket", 1_000), None).unwrap();
        let find = |s: &mut Store, now| s.find_ticket("alice", "hash-t1", "codename-review", now);
        assert_eq!(find(&mut store, 1_010).unwrap(), Some(("t1".into(), "pending".into())));
        assert_eq!(
            store.find_ticket("mallory", "hash-t1", "codename-review", 1_010).unwrap(),
            None
        );
        assert!(store.decide("t1", true, "bob", None, 1_500).unwrap());
        assert_eq!(find(&mut store, 2_400).unwrap(), Some(("t1".into(), "approved".into())));
        assert_eq!(
            find(&mut store, 2_600).unwrap(),
            None,
            "window is the timeout after the decision"
        );
        assert!(store.finish_approval("t1", "approved", "forwarded", 2_000).unwrap());
        assert_eq!(find(&mut store, 2_100).unwrap(), None, "redeemed once");
        assert_eq!(store.approvals(Some("pending"), 10).unwrap().len(), 0);
        assert_eq!(store.approvals(None, 10).unwrap().len(), 5);

        // Approved but never claimed (the holder is gone): abandoned after the claim window.
        store.hold(&held("a5", "wait", 10_000), Some(body)).unwrap();
        assert!(store.decide("a5", true, "bob", None, 10_100).unwrap());
        assert_eq!(store.expire_approvals(10_200, 1_000).unwrap(), 0);
        assert_eq!(store.expire_approvals(11_200, 1_000).unwrap(), 1);
        assert_eq!(store.claim_approved_body("a5", 11_300).unwrap(), None);
        // A restarted instance abandons what it held.
        store.hold(&held("a6", "wait", 20_000), Some(body)).unwrap();
        assert_eq!(store.abandon_instance("a", 20_100).unwrap(), 1);
        assert_eq!(store.approval("a6").unwrap().unwrap().state, "abandoned");
    }
}

/// Entries in `store` for request `id`.
fn entries_of(url: &StoreUrl, id: &str) -> usize {
    let q = airlock_store::Query { limit: 1000, request_id: Some(id.into()), ..Default::default() };
    Store::open(url).unwrap().search(&q).unwrap().len()
}

#[test]
fn a_commit_window_never_holds_an_awaited_entry_or_a_detached_one_forever() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // A window longer than any test: an awaited entry, a sync or a stop must close the
        // group (otherwise this test hangs, and the runner's timeout fails it).
        let chain = unique("w");
        let long = WriterOptions { window: Duration::from_secs(3600), ..options(&chain) };
        let writer =
            Writer::start(&url, SessionKeys::from_pem(&key.to_pem()).unwrap(), long, None).unwrap();
        rt.block_on(async {
            writer.append_detached(draft(Kind::Request, "d1", "alice"));
            writer.append(draft(Kind::Request, "a1", "alice")).await.unwrap();
        });
        // The detached entry queued before it committed in the same group.
        assert_eq!((entries_of(&url, "d1"), entries_of(&url, "a1")), (1, 1), "{url:?}");
        rt.block_on(async {
            writer.append_detached(draft(Kind::Response, "d1", "alice"));
            writer.sync().await.unwrap();
        });
        assert_eq!(entries_of(&url, "d1"), 2, "{url:?}: a sync commits the open group");
        writer.append_detached(draft(Kind::Response, "a1", "alice"));
        writer.close();
        assert_eq!(entries_of(&url, "a1"), 2, "{url:?}: a stop commits the open group");

        // A short window closes by itself: a lone detached entry commits with nothing after it.
        let chain = unique("w");
        let short = WriterOptions { window: Duration::from_millis(20), ..options(&chain) };
        let writer =
            Writer::start(&url, SessionKeys::from_pem(&key.to_pem()).unwrap(), short, None)
                .unwrap();
        writer.append_detached(draft(Kind::Record, "lone", "alice"));
        let mut polls = 0;
        while entries_of(&url, "lone") == 0 {
            polls += 1;
            assert!(polls < 500, "{url:?}: the window never closed");
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.close();
        let reports = verify(&url, &key, &[]);
        assert_eq!(first_bad(&reports), None, "{url:?}: {reports:?}");
    }
}

#[test]
fn entries_waited_on_together_share_commits() {
    for url in backends() {
        let key = SessionKeys::generate().unwrap();
        let writer = Writer::start(&url, key, options(&unique("g")), None).unwrap();
        let before = writer.commits();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            // All 32 are queued within one turn of the runtime, while the writer is waking
            // up or committing the first of them.
            let waits: Vec<_> = (0..32)
                .map(|i| {
                    let writer = writer.clone();
                    tokio::spawn(async move {
                        writer.append(draft(Kind::Request, &format!("g{i}"), "alice")).await
                    })
                })
                .collect();
            for w in waits {
                w.await.unwrap().unwrap();
            }
        });
        let commits = writer.commits() - before;
        // One commit per entry would be 32: what queued during a commit joins the next one.
        assert!(commits <= 8, "{url:?}: {commits} commits for 32 entries waited on together");
        writer.close();
    }
}

/// A draft whose detail is `bytes` of text (a large masked body).
fn big_draft(id: &str, bytes: usize) -> Draft {
    let mut d = draft(Kind::Record, id, "alice");
    d.detail = airlock_audit::detail(&serde_json::json!({ "request_body": "x".repeat(bytes) }));
    d
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn wal_of(db: &std::path::Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

#[test]
fn the_wal_is_checkpointed_by_its_own_thread() {
    let url = backends().remove(0);
    assert!(matches!(url, StoreUrl::Sqlite(_)));
    let key = SessionKeys::generate().unwrap();
    let writer =
        Writer::start(&url, SessionKeys::from_pem(&key.to_pem()).unwrap(), options("a"), None)
            .unwrap();
    // About 20 MB of entries: five times the WAL growth that asks for a checkpoint.
    for i in 0..2500 {
        writer.append_detached(big_draft(&format!("r{i}"), 8 * 1024));
    }
    // Closing joins the checkpoint thread after the run it was asked for last.
    writer.close();
    assert!(writer.wal_checkpoints() >= 1, "the checkpoint thread never ran");
    let reports = verify(&url, &key, &[]);
    assert_eq!((reports[0].entries, &reports[0].problem), (2500, &None), "{reports:?}");
}

#[test]
fn a_connection_that_handed_off_its_checkpoints_still_bounds_the_wal() {
    // No checkpoint thread at all: the backstop alone keeps the WAL from growing without end.
    let StoreUrl::Sqlite(db) = backends().remove(0) else { unreachable!() };
    let mut store = Store::open(&StoreUrl::Sqlite(db.clone())).unwrap();
    assert!(store.hand_off_checkpoints());
    let mut chain = airlock_audit::Chain::start("a");
    // 48 MB in 1 MB commits, half again the backstop's 32 MiB.
    for i in 0..48 {
        let (sealed, next) = chain.seal(vec![big_draft(&format!("r{i}"), 1 << 20)]);
        store.append(&sealed).unwrap();
        chain = next;
    }
    let (wal, main) = (file_len(&wal_of(&db)), file_len(&db));
    assert!(wal < 40 << 20, "WAL {wal} bytes");
    assert!(main > 16 << 20, "database file {main} bytes: the backstop never checkpointed");
}

#[test]
fn the_writer_and_its_checkpoint_thread_ask_for_a_short_slice_when_told() {
    use airlock_store::sched::{SLICE_NS, slice_of, threads_named};
    // Kernels before 6.12 have no custom slices and report none (0): nothing to see there.
    if slice_of(0).is_none_or(|s| s == 0) {
        eprintln!("this kernel reports no scheduler slices: skipped");
        return;
    }
    let threads = ["airlock-audit", "airlock-wal"];
    let key = SessionKeys::generate().unwrap();
    let url = backends().remove(0);
    let short = WriterOptions { short_slice: true, ..options("a") };
    // Start returns once both threads run, named and with their slice. (Under nextest each
    // test is a process of its own; under `cargo test` other tests' writers may be running
    // too, with the default: so threads are told apart by id.)
    let writer =
        Writer::start(&url, SessionKeys::from_pem(&key.to_pem()).unwrap(), short, None).unwrap();
    let started: Vec<i32> =
        threads.iter().flat_map(|t| threads_named(t)).map(|(tid, _)| tid).collect();
    for t in threads {
        let got = threads_named(t);
        assert!(got.iter().any(|&(_, s)| s == SLICE_NS), "{t}: {got:?}");
    }
    assert_ne!(slice_of(0), Some(SLICE_NS), "the caller's own slice changed");
    writer.close();
    // Without it, new threads keep the slice they were started with.
    let url = backends().remove(0);
    let writer = Writer::start(&url, key, options("b"), None).unwrap();
    for t in threads {
        let new: Vec<(i32, u64)> =
            threads_named(t).into_iter().filter(|(tid, _)| !started.contains(tid)).collect();
        assert!(!new.is_empty() && new.iter().all(|&(_, s)| s != SLICE_NS), "{t}: {new:?}");
    }
    writer.close();
}
