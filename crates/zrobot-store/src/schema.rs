//! The schema and its migrations. `PRAGMA user_version` holds how many
//! migrations a database has had; opening applies the missing ones and refuses
//! a database made by a newer zrobot, rather than guess at its meaning.

use rusqlite::{Connection, TransactionBehavior};
use zrobot_core::store::StoreError;

use crate::error::store_error;

/// Every migration in order; a database at version `n` has had the first `n`.
/// Never edit one that has shipped: add another.
pub(crate) const MIGRATIONS: &[&str] = &[
    // What a commit touches must stay small, because every page a
    // transaction changes is written again to the WAL: a big index keyed by
    // task guid, or one ordered by service, would change about one page per
    // task. So the queue is a small table, and a finished task is appended to
    // a small "recent" table first (two of them, taking turns); the writer
    // later moves a recent table into the history a service at a time, where
    // each service's tasks sit together in finishing order (`id`), and then
    // empties it. Reads look at all three.
    "
    CREATE TABLE services (
        guid BLOB PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        public INTEGER NOT NULL,
        secrets TEXT NOT NULL,
        data TEXT NOT NULL,
        state TEXT NOT NULL,
        created REAL NOT NULL
    );

    CREATE TABLE waiting_tasks (
        guid BLOB PRIMARY KEY NOT NULL,
        service_guid BLOB NOT NULL,
        service_name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        action_name TEXT NOT NULL,
        args TEXT NOT NULL,
        priority TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created REAL NOT NULL,
        started REAL,
        duration REAL,
        result TEXT,
        eco TEXT
    ) WITHOUT ROWID;

    CREATE TABLE recent_tasks_a (
        id INTEGER PRIMARY KEY NOT NULL,
        guid BLOB NOT NULL,
        service_guid BLOB NOT NULL,
        service_name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        action_name TEXT NOT NULL,
        args TEXT NOT NULL,
        priority TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created REAL NOT NULL,
        started REAL,
        duration REAL,
        result TEXT,
        eco TEXT
    );
    CREATE INDEX recent_tasks_a_by_service ON recent_tasks_a (service_guid);

    CREATE TABLE recent_tasks_b (
        id INTEGER PRIMARY KEY NOT NULL,
        guid BLOB NOT NULL,
        service_guid BLOB NOT NULL,
        service_name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        action_name TEXT NOT NULL,
        args TEXT NOT NULL,
        priority TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created REAL NOT NULL,
        started REAL,
        duration REAL,
        result TEXT,
        eco TEXT
    );
    CREATE INDEX recent_tasks_b_by_service ON recent_tasks_b (service_guid);

    CREATE TABLE finished_tasks (
        service_guid BLOB NOT NULL,
        id INTEGER NOT NULL,
        guid BLOB NOT NULL,
        created REAL NOT NULL,
        service_name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        action_name TEXT NOT NULL,
        args TEXT NOT NULL,
        priority TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started REAL,
        duration REAL,
        result TEXT,
        eco TEXT,
        PRIMARY KEY (service_guid, id)
    ) WITHOUT ROWID;

    -- Counters of the store itself: `finished_id`, the highest id a
    -- finished task was given once the recent tables are empty.
    CREATE TABLE store_meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );

    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        url TEXT NOT NULL
    );

    CREATE TABLE template_repos (
        url TEXT PRIMARY KEY NOT NULL,
        branch TEXT NOT NULL,
        added REAL NOT NULL
    );

    CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    ",
    // Who asked for a task (JSON), when another task did.
    "
    ALTER TABLE waiting_tasks ADD COLUMN trace TEXT;
    ALTER TABLE recent_tasks_a ADD COLUMN trace TEXT;
    ALTER TABLE recent_tasks_b ADD COLUMN trace TEXT;
    ALTER TABLE finished_tasks ADD COLUMN trace TEXT;
    ",
    // Random keys made every commit rewrite pages all over the database: the
    // queue was keyed by task guid and the recent tables indexed by service.
    // Now the queue is kept in queue order (`seq`), so that a commit touches
    // its ends only; a finished task is appended once to `done_tasks` in
    // finishing order and never moved; `done_by_service` lists each
    // service's finished tasks, and is filled in batches in the background
    // (the store keeps the tasks not in it yet in memory; `indexed_id` says
    // up to where it is complete).
    "
    CREATE TABLE queue (
        guid BLOB NOT NULL,
        service_guid BLOB NOT NULL,
        service_name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        action_name TEXT NOT NULL,
        args TEXT NOT NULL,
        priority TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created REAL NOT NULL,
        started REAL,
        duration REAL,
        result TEXT,
        eco TEXT,
        trace TEXT,
        PRIMARY KEY (seq, guid)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO queue (guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace)
        SELECT guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace FROM waiting_tasks;
    DROP TABLE waiting_tasks;
    ALTER TABLE queue RENAME TO waiting_tasks;

    CREATE TABLE done_tasks (
        id INTEGER PRIMARY KEY NOT NULL,
        guid BLOB NOT NULL,
        service_guid BLOB NOT NULL,
        service_name TEXT NOT NULL,
        template_uid TEXT NOT NULL,
        action_name TEXT NOT NULL,
        args TEXT NOT NULL,
        priority TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created REAL NOT NULL,
        started REAL,
        duration REAL,
        result TEXT,
        eco TEXT,
        trace TEXT
    );
    CREATE TABLE done_by_service (
        service_guid BLOB NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (service_guid, id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO done_tasks (id, guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace)
        SELECT id, guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace FROM finished_tasks ORDER BY id;
    INSERT OR IGNORE INTO done_tasks (id, guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace)
        SELECT id, guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace FROM recent_tasks_a ORDER BY id;
    INSERT OR IGNORE INTO done_tasks (id, guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace)
        SELECT id, guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, attempt, created, started, duration, result, eco, trace FROM recent_tasks_b ORDER BY id;
    INSERT INTO done_by_service (service_guid, id) SELECT service_guid, id FROM done_tasks;
    INSERT OR REPLACE INTO store_meta (key, value)
        SELECT 'indexed_id', coalesce(max(v), 0) FROM (
            SELECT max(id) AS v FROM done_tasks
            UNION ALL SELECT value FROM store_meta WHERE key = 'finished_id'
        );
    DELETE FROM store_meta WHERE key = 'finished_id';
    DROP TABLE finished_tasks;
    DROP TABLE recent_tasks_a;
    DROP TABLE recent_tasks_b;
    ",
    // The idempotency key a task was scheduled with, so that a retry after
    // a restart gets the same task. The index lists only keyed tasks, by
    // finishing order (`id`), so that a commit adds to its end and the
    // robot's start reads the newest keys without touching the others.
    "
    ALTER TABLE waiting_tasks ADD COLUMN idem_key TEXT;
    ALTER TABLE done_tasks ADD COLUMN idem_key TEXT;
    CREATE INDEX done_tasks_keyed ON done_tasks (id, idem_key, service_guid, guid, created)
        WHERE idem_key IS NOT NULL;
    ",
];

/// The schema version this code writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `conn` up to [`VERSION`].
pub(crate) fn migrate(conn: &mut Connection, db: &str) -> Result<(), StoreError> {
    let fail = |e: rusqlite::Error| store_error(db, "preparing the schema", e);
    // Immediate, so that two processes opening a new database do not both migrate it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(fail)?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            db: db.to_owned(),
            found,
            known: VERSION,
        });
    }
    if found == VERSION {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(|e| {
            store_error(db, &format!("migrating the schema to version {}", i + 1), e)
        })?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(fail)?;
    tx.commit().map_err(fail)?;
    tracing::info!(db, from = found, to = VERSION, "database schema migrated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_of_every_older_version_is_brought_up_to_date() {
        for from in 0..VERSION {
            let mut conn = Connection::open_in_memory().expect("a database");
            for sql in &MIGRATIONS[..from as usize] {
                conn.execute_batch(sql).expect("an old migration");
            }
            conn.pragma_update(None, "user_version", from)
                .expect("a version");
            migrate(&mut conn, "old.db").expect("migrated");
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .expect("a version");
            assert_eq!(version, VERSION);
            // Migrating again changes nothing.
            migrate(&mut conn, "old.db").expect("migrated again");
        }
    }
}
