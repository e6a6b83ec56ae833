-- The lock_key and concurrency_key indexes hold hashtext(key), not the key itself, so
-- no key can make a claim fail.
--
-- Why: a B-tree entry holds at most ~2,700 bytes (a third of a page). The baseline indexes
-- held the raw key of every RUNNING row, and a row only enters them when a worker claims
-- it, not when it is written. One READY row with a 9,000-byte key (written by any client)
-- made every claim that picked it fail with "index row requires 9024 bytes": the whole
-- statement, so the queue stopped. A 4-byte hash always fits. The lookups in
-- worker_claim compare the hashes (index condition) and then the keys themselves, so a
-- hash collision costs one heap row, never a wrong answer.
--
-- Why not a hash index (USING hash): it would need no change to the lookups, but PostgreSQL
-- sizes a new hash index from the whole table's row count, not the rows its predicate
-- keeps: measured on 1M finished rows with 2,000 RUNNING, each hash index came out at
-- 29 MB (B-tree: 160 kB), every VACUUM walks all of it, and it never shrinks. Hash indexes
-- also leave out NULL keys, while this B-tree keeps one entry per RUNNING row: reclaim,
-- the running counts and the worker list scan it as "the RUNNING rows" (measured: same
-- plans and ~0.5 ms before and after on that table).
--
-- Measured there, against the raw-key B-trees: a lock lookup and a concurrency count stay
-- at 0.01-0.03 ms (an index scan plus a heap check instead of an index-only scan), the
-- index sizes are the same, and moving 5,000 rows READY -> RUNNING -> READY costs the same
-- within run-to-run noise (60-220 ms both ways).
--
-- The new indexes are built first and the old ones dropped last, so the table is only
-- locked exclusively for the drop, not for the builds. Installs made by reproq-worker or
-- reproq-django's schema command have the same raw-key indexes under other names; they
-- carry the same failure and these serve the same lookups, so they go too.

CREATE INDEX task_runs_lock_key_hash_idx
    ON task_runs (hashtext(lock_key)) WHERE status = 'RUNNING';
CREATE INDEX task_runs_concurrency_hash_idx
    ON task_runs (hashtext(concurrency_key))
    WHERE status = 'RUNNING' AND concurrency_key IS NOT NULL;

DROP INDEX IF EXISTS task_runs_lock_key_idx;
DROP INDEX IF EXISTS task_runs_concurrency_idx;
DROP INDEX IF EXISTS idx_task_runs_lock_key;
DROP INDEX IF EXISTS idx_task_runs_concurrency_active;

ALTER INDEX task_runs_lock_key_hash_idx RENAME TO task_runs_lock_key_idx;
ALTER INDEX task_runs_concurrency_hash_idx RENAME TO task_runs_concurrency_idx;
