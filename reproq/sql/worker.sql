-- The worker engine: claim, heartbeat, finish, give back, reclaim, workflow progress and
-- the worker registry. Every statement that touches a claimed row is fenced on
-- (leased_by, attempts, status = 'RUNNING'): a worker can only act on the very attempt it
-- claimed, never on a later one, even when a restarted worker reuses its id.
--
-- The batch statements' fences (worker_sync, worker_heartbeat, worker_give_back) are
-- written `t.status = (SELECT 'RUNNING')`, not `t.status = 'RUNNING'`.
-- Workers run generic plans, and PostgreSQL's statistics rarely see a RUNNING row, so with
-- the literal it plans the lookup as a walk over the RUNNING-only lock_key index, filtering
-- every RUNNING row of the whole fleet against the batch: the cost of each statement grows
-- with the number of workers. The sub-select is a value the planner cannot match against
-- that index's predicate, which leaves the primary key: the batch's own rows, whatever
-- the fleet size.
--
-- worker_claim and worker_sync must take the same candidates in the same order, or the
-- fairness rules would hold on one path and not the other. That part is written once, as
-- the fragment claim_candidates, and spliced into both statements when reproq.queries
-- loads this file. A splice rather than a SQL function in the schema (as some queues keep
-- their fetch): the server still plans each statement whole, with the candidates' row
-- estimates in view, and the text stays in step with the code that reads its rows (a
-- function would be changed by a migration, under every worker of every version at
-- once). Measured on 150,000 rows in 3 queues, generic plans, median per call: the
-- spliced statements run as fast as the hand-copied ones (worker_sync fifo path 4.0-4.2
-- ms against 4.1-4.2; general path 6.3-6.8 against 6.3-6.6), while a SQL function,
-- even inlined by the planner, cost the fifo path 4.5-4.6 ms, because worker_sync's
-- fast path needs queues and levels outside it and reads them twice.

-- fragment: claim_candidates
-- The candidates of a claim and the order that makes it fair, written once for
-- worker_claim and worker_sync (see the head of this file).
queues AS (
    SELECT u.queue_name, u.ord
    FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS u(queue_name, ord)
    WHERE %(n)s > 0 AND NOT EXISTS (
        SELECT 1 FROM reproq_queue_controls qc
        WHERE qc.queue_name = u.queue_name AND qc.paused
    )
),
-- The distinct priorities of unscheduled READY rows (run_after NULL), per queue: a skip
-- scan of the due index, whose leading columns (queue_name, coalesce(run_after, ...))
-- are then both equalities, so "priority < p" is an index bound.
levels AS (
    SELECT q.queue_name, q.ord, 1 AS depth, (
        SELECT t.priority FROM task_runs t
        WHERE t.queue_name = q.queue_name AND t.status = 'READY'
          AND coalesce(t.run_after, '-infinity'::timestamptz) = '-infinity'::timestamptz
        ORDER BY t.priority DESC LIMIT 1
    ) AS priority
    FROM queues q
    UNION ALL
    SELECT l.queue_name, l.ord, l.depth + 1, (
        SELECT t.priority FROM task_runs t
        WHERE t.queue_name = l.queue_name AND t.status = 'READY'
          AND coalesce(t.run_after, '-infinity'::timestamptz) = '-infinity'::timestamptz
          AND t.priority < l.priority
        ORDER BY t.priority DESC LIMIT 1
    )
    FROM levels l
    WHERE l.priority IS NOT NULL AND l.depth < %(max_levels)s
),
-- Candidates, read without locks: the oldest unscheduled rows of each priority level, and
-- the earliest-due scheduled rows (retries, run_after) of each queue. A statement ranks
-- them within their queue by (aged, priority DESC, enqueued_at): aged is when a row of
-- priority p counts as enqueued, p * %(aging)s seconds early (NULL, so no effect, when
-- aging is off). keyed: the row has a lock_key or a concurrency limit.
candidates AS (
    SELECT c.result_id, c.queue_name, c.priority, c.enqueued_at, c.task_path, c.lock_key,
           c.concurrency_key, c.concurrency_limit, c.ord,
           (c.lock_key IS NOT NULL
            OR (c.concurrency_key IS NOT NULL AND c.concurrency_limit > 0)) AS keyed,
           CASE WHEN %(aging)s::float8 > 0
                THEN c.enqueued_at - make_interval(secs => c.priority * %(aging)s::float8)
           END AS aged
    FROM (
        SELECT d.*, l.ord
        FROM levels l
        CROSS JOIN LATERAL (
            SELECT t.result_id, t.queue_name, t.priority, t.enqueued_at, t.task_path,
                   t.lock_key, t.concurrency_key, t.concurrency_limit
            FROM task_runs t
            WHERE t.queue_name = l.queue_name AND t.status = 'READY'
              AND coalesce(t.run_after, '-infinity'::timestamptz) = '-infinity'::timestamptz
              AND t.priority = l.priority
            ORDER BY t.enqueued_at
            LIMIT %(scan)s
        ) d
        WHERE l.priority IS NOT NULL
        UNION ALL
        SELECT d.*, q.ord
        FROM queues q
        CROSS JOIN LATERAL (
            SELECT t.result_id, t.queue_name, t.priority, t.enqueued_at, t.task_path,
                   t.lock_key, t.concurrency_key, t.concurrency_limit
            FROM task_runs t
            WHERE t.queue_name = q.queue_name AND t.status = 'READY'
              AND coalesce(t.run_after, '-infinity'::timestamptz) > '-infinity'::timestamptz
              AND coalesce(t.run_after, '-infinity'::timestamptz) <= now()
            ORDER BY coalesce(t.run_after, '-infinity'::timestamptz)
            LIMIT %(scan)s
        ) d
    ) c
),

-- fragment: pick_in_order
-- Lock the candidates listed in claim_order (an array of result_ids, best first) in that
-- order with SKIP LOCKED until %(n)s are held; re-checked on the newest row version when
-- a row changed since the snapshot. Written for plans that cannot go wrong whatever the
-- statistics (see worker_session_setup): task_runs is only looked up by primary key,
-- never joined with the candidates. A join on result_id lets the planner read the whole
-- primary key in order (for a merge, or as the outer side of a nested loop), which an
-- empty table's estimates make look as cheap as the lookups: measured, the claim's
-- UPDATE ... FROM read all 50,000 index entries per claim (~900 ms). The status test is
-- written `(SELECT 'READY')` so that the READY-only indexes, which a plain 'READY' would
-- offer as "every READY row", cannot serve it either (the fences' trick, at the head of
-- this file). Ordering by array_position costs nothing worth measuring at claim sizes (a
-- few hundred candidates at most).
picked AS (
    SELECT t.result_id
    FROM task_runs t
    WHERE t.result_id = ANY((SELECT o.ids FROM claim_order o)::bigint[])
      AND t.status = (SELECT 'READY') AND (t.run_after IS NULL OR t.run_after <= now())
    ORDER BY array_position((SELECT o.ids FROM claim_order o), t.result_id)
    LIMIT %(n)s
    FOR UPDATE OF t SKIP LOCKED
),

-- name: worker_claim
-- Claim up to %(n)s due READY rows from the worker's queues in one statement.
--
-- Order: per queue, by aged priority (a row of priority p ranks like one enqueued
-- p * %(aging)s seconds earlier; aging 0 means strict priority), FIFO within a priority;
-- queues are interleaved round-robin (rank within queue first, then the queue's place in
-- %(queues)s, which the worker rotates), so no queue starves another.
--
-- Candidates are read per (queue, priority level) without locks, then locked in that
-- order with SKIP LOCKED until %(n)s are held, so concurrent claimers pass each other.
--
-- Rows with a lock_key or a concurrency limit are only claimed when this transaction
-- holds the key's advisory lock (%(lock_keys)s / %(conc_keys)s, taken by
-- worker_lock_keys in an earlier statement, so this statement's snapshot already sees
-- every RUNNING row of the key). Without it they come back as kind 'deferred' and the
-- worker retries them on the keyed path. Rate limits are token buckets decremented here;
-- the bucket's row lock serialises concurrent claimers.
--
-- Result rows: kind 'claimed' (one per claimed row), 'deferred' (keys to lock and
-- retry) and 'limited' (a rate limit held rows back: poll again soon).
WITH RECURSIVE
-- include: claim_candidates
cand AS (
    SELECT c.result_id, c.queue_name, c.priority, c.enqueued_at, c.task_path, c.lock_key,
           CASE WHEN c.concurrency_limit > 0 THEN c.concurrency_key END AS concurrency_key,
           c.concurrency_limit, c.ord, c.aged
    FROM candidates c
    -- A key already RUNNING (as far as this snapshot sees) blocks its rows. Keys are
    -- indexed by hashtext(key) (migration 0006), so the lookups name it.
    WHERE c.lock_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM task_runs r
        WHERE hashtext(r.lock_key) = hashtext(c.lock_key) AND r.lock_key = c.lock_key
          AND r.status = 'RUNNING')
),
conc AS (
    SELECT k.concurrency_key, (
        SELECT count(*) FROM task_runs r
        WHERE hashtext(r.concurrency_key) = hashtext(k.concurrency_key)
          AND r.concurrency_key = k.concurrency_key AND r.status = 'RUNNING'
    ) AS running
    FROM (SELECT DISTINCT concurrency_key FROM cand WHERE concurrency_key IS NOT NULL) k
),
-- Every bucket with its refilled token count, or no rows at all while no limit is set.
limits AS MATERIALIZED (
    SELECT r.key, r.tokens_per_second::float8 AS rate,
           least(r.burst_size::float8,
                 r.current_tokens::float8
                 + greatest(0, extract(epoch FROM now() - r.last_refilled_at))::float8
                   * r.tokens_per_second::float8) AS available
    FROM rate_limits r
    WHERE EXISTS (SELECT 1 FROM rate_limits x WHERE x.tokens_per_second > 0)
),
-- The most specific existing bucket applies (task, then queue, then global); rate 0 = none.
cand2 AS (
    SELECT c.*, CASE WHEN lim.rate > 0 THEN lim.key END AS bucket, lim.available
    FROM cand c
    LEFT JOIN LATERAL (
        SELECT m.key, m.rate, m.available FROM limits m
        WHERE m.key IN ('task:' || c.task_path, 'queue:' || c.queue_name, 'global')
        ORDER BY CASE WHEN m.key = 'global' THEN 2
                      WHEN m.key = 'task:' || c.task_path THEN 0 ELSE 1 END
        LIMIT 1
    ) lim ON true
),
-- Only rows with a key or a bucket need per-key ranks: within this batch, one row per
-- lock_key, no more than the free room of a concurrency key, no more than the tokens.
keyed AS (
    SELECT c.*, cc.running,
           row_number() OVER (PARTITION BY c.lock_key
                              ORDER BY c.aged, c.priority DESC, c.enqueued_at) AS lrank,
           row_number() OVER (PARTITION BY c.concurrency_key
                              ORDER BY c.aged, c.priority DESC, c.enqueued_at) AS crank,
           row_number() OVER (PARTITION BY c.bucket
                              ORDER BY c.aged, c.priority DESC, c.enqueued_at) AS brank
    FROM cand2 c
    LEFT JOIN conc cc ON cc.concurrency_key = c.concurrency_key
    WHERE c.lock_key IS NOT NULL OR c.concurrency_key IS NOT NULL OR c.bucket IS NOT NULL
),
eligible AS (
    SELECT e.*,
           row_number() OVER (PARTITION BY e.queue_name
                              ORDER BY e.aged, e.priority DESC, e.enqueued_at) AS qrank,
           (e.lock_key IS NULL OR e.lock_key = ANY(%(lock_keys)s::text[]))
           AND (e.concurrency_key IS NULL OR e.concurrency_key = ANY(%(conc_keys)s::text[]))
               AS allowed
    FROM (
        SELECT c.result_id, c.queue_name, c.priority, c.enqueued_at, c.aged, c.ord,
               c.lock_key, c.concurrency_key, c.bucket
        FROM cand2 c
        WHERE c.lock_key IS NULL AND c.concurrency_key IS NULL AND c.bucket IS NULL
        UNION ALL
        SELECT k.result_id, k.queue_name, k.priority, k.enqueued_at, k.aged, k.ord,
               k.lock_key, k.concurrency_key, k.bucket
        FROM keyed k
        WHERE (k.lock_key IS NULL OR k.lrank = 1)
          AND (k.concurrency_key IS NULL OR k.crank <= k.concurrency_limit - k.running)
          AND (k.bucket IS NULL OR k.brank <= floor(k.available))
    ) e
),
claim_order AS (
    SELECT ARRAY(SELECT e.result_id FROM eligible e WHERE e.allowed ORDER BY e.qrank, e.ord)
           AS ids
),
-- include: pick_in_order
-- The rows picked, with their buckets.
taken AS (
    SELECT p.result_id, e.bucket FROM picked p JOIN eligible e ON e.result_id = p.result_id
),
demand AS (
    SELECT p.bucket, count(*) AS n FROM taken p WHERE p.bucket IS NOT NULL GROUP BY p.bucket
),
-- All or nothing per bucket; a refused bucket is retried on the next claim.
granted AS (
    UPDATE rate_limits r SET
        current_tokens = least(r.burst_size::float8,
                               r.current_tokens::float8
                               + greatest(0, extract(epoch FROM now() - r.last_refilled_at))::float8
                                 * r.tokens_per_second::float8) - d.n,
        last_refilled_at = greatest(r.last_refilled_at, now())
    FROM demand d
    WHERE r.key = d.bucket AND r.tokens_per_second > 0
      AND least(r.burst_size::float8,
                r.current_tokens::float8
                + greatest(0, extract(epoch FROM now() - r.last_refilled_at))::float8
                  * r.tokens_per_second::float8) >= d.n
    RETURNING r.key
),
claimed AS (
    UPDATE task_runs t SET
        status = 'RUNNING',
        attempts = t.attempts + 1,
        leased_by = %(worker_id)s,
        leased_until = now() + make_interval(secs => %(lease_seconds)s::float8),
        started_at = coalesce(t.started_at, now()),
        last_attempted_at = now(),
        worker_ids = coalesce(t.worker_ids, '[]'::jsonb) || jsonb_build_array(%(worker_id)s::text),
        updated_at = now()
    -- By primary key, never joined with the rows taken (see pick_in_order).
    WHERE t.result_id = ANY(ARRAY(
        SELECT p.result_id FROM taken p
        WHERE p.bucket IS NULL OR p.bucket IN (SELECT g.key FROM granted g)))
    RETURNING t.result_id, t.attempts, t.spec_json::text AS spec, t.timeout_seconds,
              t.max_attempts, t.workflow_id,
              (t.expires_at IS NOT NULL AND t.expires_at <= now()) AS expired,
              t.cancel_requested, t.queue_name,
              (t.lock_key IS NOT NULL OR (t.concurrency_key IS NOT NULL
                                          AND t.concurrency_limit > 0)) AS keyed
)
SELECT 'claimed' AS kind, c.result_id, c.attempts, c.spec, c.timeout_seconds, c.max_attempts,
       c.workflow_id, c.expired, c.cancel_requested, c.queue_name, c.keyed,
       NULL::text AS lock_key, NULL::text AS concurrency_key
FROM claimed c
UNION ALL
SELECT 'deferred', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       e.lock_key, e.concurrency_key
FROM eligible e
WHERE NOT e.allowed AND e.qrank <= %(n)s
UNION ALL
SELECT 'limited', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE EXISTS (SELECT 1 FROM keyed k WHERE k.bucket IS NOT NULL AND k.brank > floor(k.available))
   OR EXISTS (SELECT 1 FROM demand d WHERE d.bucket NOT IN (SELECT g.key FROM granted g));

-- name: worker_sync
-- The worker's round trip: record a batch of ended attempts and claim up to %(n)s due READY
-- rows, in one statement and so one commit. With %(n)s = 0 it only records.
--
-- Recording: %(rows)s is a JSON object mapping each result_id (as text) to how its attempt
-- ended: a = the attempt, s = the status (SUCCESSFUL; READY, a retry after d seconds;
-- FAILED), r = the return value, e = the errors_json entry to append, m = last_error,
-- l = logs_uri. The columns are written as reproq-django's Go worker writes them: lease
-- columns cleared however the attempt ended, last_error and failed_at set only on a final
-- FAILED (which also clears run_after), finished_at cleared on a retry. Rows are found by primary key and their entry looked up in the object,
-- never joined with it: such a join can be planned as a nested loop costing batch size
-- times RUNNING rows. Fenced per row on (leased_by, attempts, RUNNING); rows whose lease
-- is gone are left alone. Result rows of kind 'finished' name the rows recorded.
--
-- Claiming: worker_claim for the common case, with less work per claim: rows without
-- lock_key or concurrency limit while no rate limit is set. Same candidates, order and
-- fairness. If a keyed row is among the first %(n)s candidates, or any rate limit is set,
-- it claims nothing and answers one row of kind 'escalate': the worker then uses
-- worker_claim. The claim reads the snapshot from before the recording: rows it records
-- were RUNNING there, so the two never touch the same row.
WITH RECURSIVE
finished AS (
    UPDATE task_runs t SET
        status = %(rows)s::jsonb -> t.result_id::text ->> 's',
        return_json = CASE WHEN %(rows)s::jsonb -> t.result_id::text ->> 's' = 'SUCCESSFUL'
                           THEN %(rows)s::jsonb -> t.result_id::text -> 'r'
                           ELSE t.return_json END,
        errors_json = CASE WHEN %(rows)s::jsonb -> t.result_id::text ? 'e'
                           THEN coalesce(t.errors_json, '[]'::jsonb)
                                || jsonb_build_array(%(rows)s::jsonb -> t.result_id::text -> 'e')
                           ELSE t.errors_json END,
        run_after = CASE %(rows)s::jsonb -> t.result_id::text ->> 's'
                        WHEN 'READY' THEN now() + make_interval(
                            secs => (%(rows)s::jsonb -> t.result_id::text ->> 'd')::float8)
                        WHEN 'FAILED' THEN NULL
                        ELSE t.run_after END,
        finished_at = CASE WHEN %(rows)s::jsonb -> t.result_id::text ->> 's' = 'READY'
                           THEN NULL ELSE now() END,
        failed_at = CASE WHEN %(rows)s::jsonb -> t.result_id::text ->> 's' = 'FAILED'
                         THEN now() END,
        last_error = CASE WHEN %(rows)s::jsonb -> t.result_id::text ->> 's' = 'FAILED'
                          THEN %(rows)s::jsonb -> t.result_id::text ->> 'm' END,
        logs_uri = coalesce(%(rows)s::jsonb -> t.result_id::text ->> 'l', t.logs_uri),
        leased_by = NULL,
        leased_until = NULL,
        updated_at = now()
    WHERE t.result_id = ANY(ARRAY(SELECT k::bigint FROM jsonb_object_keys(%(rows)s::jsonb) AS k))
      AND t.attempts = (%(rows)s::jsonb -> t.result_id::text ->> 'a')::int
      AND t.leased_by = %(worker_id)s
      AND t.status = (SELECT 'RUNNING')
    RETURNING t.result_id
),
-- include: claim_candidates
-- The common shape: one queue with rows, all of one priority, no scheduled row due. The
-- order is then plain FIFO, and fifo locks rows straight off the due index instead of
-- reading candidates, ranking them and reading them again. No row: the general path.
stream AS (
    SELECT min(l.queue_name) AS queue_name, min(l.priority) AS priority
    FROM levels l
    WHERE l.priority IS NOT NULL
    HAVING count(*) = 1 AND NOT EXISTS (
        SELECT 1
        FROM queues q
        CROSS JOIN LATERAL (
            SELECT 1 FROM task_runs t
            WHERE t.queue_name = q.queue_name AND t.status = 'READY'
              AND coalesce(t.run_after, '-infinity'::timestamptz) > '-infinity'::timestamptz
              AND coalesce(t.run_after, '-infinity'::timestamptz) <= now()
            -- The due index's order: without it, and without column statistics, the
            -- planner took the claim index (queue_name, status, ...) and filtered every
            -- READY row of the queue (28 ms of each round trip on 50,000 rows).
            ORDER BY coalesce(t.run_after, '-infinity'::timestamptz)
            LIMIT 1
        ) d
    )
),
fifo AS (
    SELECT t.result_id,
           (t.lock_key IS NOT NULL OR (t.concurrency_key IS NOT NULL
                                       AND t.concurrency_limit > 0)) AS keyed
    FROM task_runs t
    WHERE t.queue_name = (SELECT s.queue_name FROM stream s) AND t.status = 'READY'
      AND coalesce(t.run_after, '-infinity'::timestamptz) = '-infinity'::timestamptz
      AND t.priority = (SELECT s.priority FROM stream s)
    ORDER BY t.enqueued_at
    LIMIT %(n)s
    FOR UPDATE OF t SKIP LOCKED
),
ranked AS (
    SELECT c.result_id, c.ord, c.keyed,
           row_number() OVER (PARTITION BY c.queue_name
                              ORDER BY c.aged, c.priority DESC, c.enqueued_at) AS qrank
    FROM candidates c
    -- The general path only: fifo has claimed already.
    WHERE NOT EXISTS (SELECT 1 FROM stream)
),
blocked AS (
    SELECT EXISTS (SELECT 1 FROM ranked r WHERE r.keyed AND r.qrank <= %(n)s)
           OR EXISTS (SELECT 1 FROM fifo f WHERE f.keyed)
           OR (%(n)s > 0 AND EXISTS (SELECT 1 FROM rate_limits x WHERE x.tokens_per_second > 0))
           AS yes
),
-- The candidates in claim order: picked locks them in that order.
claim_order AS (
    SELECT ARRAY(
        SELECT r.result_id FROM ranked r
        WHERE NOT (SELECT b.yes FROM blocked b)
        ORDER BY r.qrank, r.ord) AS ids
),
-- include: pick_in_order
claimed AS (
    UPDATE task_runs t SET
        status = 'RUNNING',
        attempts = t.attempts + 1,
        leased_by = %(worker_id)s,
        leased_until = now() + make_interval(secs => %(lease_seconds)s::float8),
        started_at = coalesce(t.started_at, now()),
        last_attempted_at = now(),
        worker_ids = coalesce(t.worker_ids, '[]'::jsonb) || jsonb_build_array(%(worker_id)s::text),
        updated_at = now()
    -- By primary key, never joined with the rows picked (see pick_in_order).
    WHERE t.result_id = ANY(ARRAY(
        SELECT p.result_id FROM picked p
        UNION ALL
        SELECT f.result_id FROM fifo f WHERE NOT (SELECT b.yes FROM blocked b)))
    RETURNING t.result_id, t.attempts, t.spec_json::text AS spec, t.timeout_seconds,
              t.max_attempts, t.workflow_id,
              (t.expires_at IS NOT NULL AND t.expires_at <= now()) AS expired,
              t.cancel_requested, t.queue_name
)
SELECT 'finished' AS kind, f.result_id, NULL::int, NULL::text, NULL::int, NULL::int, NULL::uuid,
       NULL::bool, NULL::bool, NULL::text, NULL::bool, NULL::text, NULL::text
FROM finished f
UNION ALL
SELECT 'claimed', c.result_id, c.attempts, c.spec, c.timeout_seconds, c.max_attempts,
       c.workflow_id, c.expired, c.cancel_requested, c.queue_name, false AS keyed,
       NULL::text AS lock_key, NULL::text AS concurrency_key
FROM claimed c
UNION ALL
SELECT 'escalate', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE (SELECT b.yes FROM blocked b);

-- name: worker_lock_keys
-- Transaction-scoped advisory locks on the keys of deferred rows, never waiting: a key
-- another claimer holds right now is simply skipped this round. Lock keys and
-- concurrency keys live in two lock spaces ("rpq" 1 and "rpq" 2).
SELECT k.kind, k.key
FROM (
    SELECT 'lock' AS kind, l.key FROM unnest(%(lock_keys)s::text[]) AS l(key)
    UNION ALL
    SELECT 'conc', c.key FROM unnest(%(conc_keys)s::text[]) AS c(key)
) k
WHERE pg_try_advisory_xact_lock(
    CASE WHEN k.kind = 'lock' THEN 1919971585 ELSE 1919971586 END, hashtext(k.key));

-- name: worker_next_due
-- Seconds until the earliest scheduled row of these queues becomes due (NULL: none).
SELECT extract(epoch FROM min(n.due) - now())::float8 AS seconds
FROM unnest(%(queues)s::text[]) AS q(queue_name)
CROSS JOIN LATERAL (
    SELECT coalesce(t.run_after, '-infinity'::timestamptz) AS due
    FROM task_runs t
    WHERE t.queue_name = q.queue_name AND t.status = 'READY'
      AND coalesce(t.run_after, '-infinity'::timestamptz) > now()
    ORDER BY coalesce(t.run_after, '-infinity'::timestamptz)
    LIMIT 1
) n;

-- name: worker_session_setup
-- The planner settings every statement of a worker is written for, on its own sessions
-- only (other clients of the database keep theirs).
--
-- Generic plans: the claim statement is large, and planning it anew for every claim
-- (PostgreSQL's default for parameters it cannot estimate) costs more than running it.
--
-- No sequential scans, no bitmap scans. A worker prepares its statements once, usually
-- while its queue is empty, and keeps that plan for the session: inserts never make
-- PostgreSQL plan again, only an ANALYZE does, and autovacuum comes to it a minute or
-- more after a burst. Planned on an empty table every path costs about one row, and the
-- planner read task_runs in full everywhere: measured, a 32-slot worker idle on an empty
-- analyzed queue drained 50,000 rows COPYed in at ~300 tasks/s (each round trip ~100 ms,
-- eight sequential scans), its reclaim became a nested loop of two sequential scans
-- (minutes, cut off by statement_timeout), and with statistics but none for the columns
-- (rows inserted, never analyzed) the claim AND-ed a bitmap of every READY row into each
-- of its primary-key lookups (~200 ms). Each statement here is written so that every read
-- of task_runs has an index condition that bounds it (the primary key, or the READY and
-- RUNNING partial indexes); with these two plan kinds priced out the planner takes that
-- index whatever the statistics say. Tables without a usable index (rate_limits) are
-- still read in full: the switches only price a plan kind, they never forbid it.
--
-- No JIT: the priced-out plan kinds make every plan cost look enormous, and JIT compiles
-- whatever costs more than jit_above_cost. Even on good statistics the full claim crossed
-- it: ~125 ms of compiling per execution of a statement that runs in 2 ms.
SELECT set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('enable_seqscan', 'off', false),
       set_config('enable_bitmapscan', 'off', false),
       set_config('jit', 'off', false);

-- name: worker_listen
LISTEN reproq_tasks;

-- name: worker_register
-- Re-registering keeps started_at: the id may belong to a restarted process, and the
-- registry answers "since when has this worker id been around".
INSERT INTO reproq_workers (
    worker_id, hostname, concurrency, queues, started_at, last_seen_at, version
) VALUES (
    %(worker_id)s, %(hostname)s, %(concurrency)s, %(queues)s::jsonb, now(), now(), %(version)s
)
ON CONFLICT (worker_id) DO UPDATE SET
    hostname = EXCLUDED.hostname,
    concurrency = EXCLUDED.concurrency,
    queues = EXCLUDED.queues,
    last_seen_at = now(),
    version = EXCLUDED.version;

-- name: worker_heartbeat
-- One statement per beat: the registry row is touched (and recreated if pruned) and every
-- lease the worker still holds is extended. %(leases)s maps each result_id (as text) to
-- the attempt held, looked up per row as in worker_sync. Rows not returned are leases that
-- are gone.
WITH seen AS (
    INSERT INTO reproq_workers (
        worker_id, hostname, concurrency, queues, started_at, last_seen_at, version
    ) VALUES (
        %(worker_id)s, %(hostname)s, %(concurrency)s, %(queues)s::jsonb, now(), now(),
        %(version)s
    )
    ON CONFLICT (worker_id) DO UPDATE SET last_seen_at = now()
    RETURNING 1
)
UPDATE task_runs t SET
    leased_until = now() + make_interval(secs => %(lease_seconds)s::float8)
WHERE t.result_id = ANY(ARRAY(SELECT k::bigint FROM jsonb_object_keys(%(leases)s::jsonb) AS k))
  AND t.attempts = (%(leases)s::jsonb ->> t.result_id::text)::int
  AND t.leased_by = %(worker_id)s
  AND t.status = (SELECT 'RUNNING')
RETURNING t.result_id, t.cancel_requested;

-- name: worker_give_back
-- Unfinished attempts at shutdown: READY again, the attempt not charged. %(leases)s maps
-- each result_id (as text) to {a: the attempt, h: hold seconds}. At once when the attempt
-- has stopped (h = 0); an attempt whose thread ignored the stop (a thread cannot be
-- killed) is held back for h seconds, the time its process needs to exit, so it never
-- runs twice at once.
UPDATE task_runs t SET
    status = 'READY',
    attempts = greatest(t.attempts - 1, 0),
    run_after = CASE WHEN (%(leases)s::jsonb -> t.result_id::text ->> 'h')::float8 > 0
                     THEN now() + make_interval(
                         secs => (%(leases)s::jsonb -> t.result_id::text ->> 'h')::float8)
                     ELSE t.run_after END,
    leased_by = NULL,
    leased_until = NULL,
    updated_at = now()
WHERE t.result_id = ANY(ARRAY(SELECT k::bigint FROM jsonb_object_keys(%(leases)s::jsonb) AS k))
  AND t.attempts = (%(leases)s::jsonb -> t.result_id::text ->> 'a')::int
  AND t.leased_by = %(worker_id)s
  AND t.status = (SELECT 'RUNNING')
RETURNING t.result_id;

-- name: worker_reclaim
-- RUNNING rows whose lease expired (their worker died or lost the database): back to
-- READY, the attempt stays counted and a lease_expiry entry records it; FAILED when the
-- attempts are used up, or at once (kind cancelled) when a cancel was requested: a row an
-- operator cancelled is never handed out again. Any worker may run it; SKIP LOCKED keeps
-- them out of each other's way. %(held)s are attempts the reclaiming worker itself is
-- still running (its heartbeat will renew them): never reclaimed from under it.
--
-- expired walks the RUNNING rows: the lock_key index holds every one of them (migration
-- 0006), and its order is asked for so that no other index can serve the walk cheaply.
-- Without it, statistics taken while finished rows filled the table made the unique
-- spec_hash index look smaller, and that one holds every READY row too (a walk of the
-- whole queue). The update finds the rows again by primary key and decides on the row
-- itself. It used to join them with a second read of task_runs: planned on an empty
-- table, that became a nested loop of two sequential scans, which on 50,000 rows ran
-- until statement_timeout cut it off, every reclaim interval.
WITH expired AS (
    SELECT t.result_id
    FROM task_runs t
    WHERE t.status = 'RUNNING' AND (t.leased_until IS NULL OR t.leased_until < now())
      AND NOT (t.result_id = ANY(%(held)s::bigint[]))
    ORDER BY hashtext(t.lock_key)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE task_runs t SET
    status = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts
                  THEN 'FAILED' ELSE 'READY' END,
    errors_json = coalesce(t.errors_json, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
        'kind', CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'lease_expiry' END,
        'message', CASE WHEN t.cancel_requested
                        THEN 'cancelled: its worker stopped answering before it could stop the task'
                        ELSE 'lease of ' || coalesce(t.leased_by, 'an unknown worker') || ' expired'
                             || coalesce(' at ' || t.leased_until::text, '')
                   END,
        'exception_class', NULL,
        'traceback', NULL,
        'attempt', t.attempts,
        'at', now(),
        'worker_id', t.leased_by)),
    -- The message of the entry above, when the row is FAILED.
    last_error = CASE WHEN t.cancel_requested
                      THEN 'cancelled: its worker stopped answering before it could stop the task'
                      WHEN t.attempts >= t.max_attempts
                      THEN left('lease of ' || coalesce(t.leased_by, 'an unknown worker')
                                || ' expired' || coalesce(' at ' || t.leased_until::text, ''),
                                1024)
                 END,
    failed_at = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts THEN now() END,
    finished_at = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts THEN now() END,
    leased_by = NULL,
    leased_until = NULL,
    updated_at = now()
WHERE t.result_id = ANY(ARRAY(SELECT e.result_id FROM expired e))
RETURNING t.result_id, t.status, t.workflow_id;

-- name: worker_release_children
-- Chain steps whose parent succeeded: one fewer thing to wait for, READY at zero.
UPDATE task_runs c SET
    wait_count = greatest(c.wait_count - 1, 0),
    status = CASE WHEN c.wait_count <= 1 THEN 'READY' ELSE c.status END,
    updated_at = now()
WHERE c.parent_id = ANY(%(ids)s::bigint[]) AND c.status = 'WAITING'
RETURNING c.result_id;

-- name: worker_lock_workflows
-- Locked in a fixed order so two workers finishing members of the same chords never
-- deadlock.
SELECT w.workflow_id, w.expected_count, w.success_count, w.failure_count,
       w.callback_result_id, w.status
FROM workflow_runs w
WHERE w.workflow_id = ANY(%(workflow_ids)s::uuid[])
ORDER BY w.workflow_id
FOR UPDATE;

-- name: worker_update_workflows
UPDATE workflow_runs w SET
    success_count = u.success_count,
    failure_count = u.failure_count,
    status = u.status,
    updated_at = now()
FROM unnest(
    %(workflow_ids)s::uuid[], %(success_counts)s::int[], %(failure_counts)s::int[],
    %(statuses)s::text[]
) AS u(workflow_id, success_count, failure_count, status)
WHERE w.workflow_id = u.workflow_id AND w.workflow_id = ANY(%(workflow_ids)s::uuid[]);

-- name: worker_release_callbacks
-- A chord callback waits for the members that have not succeeded yet. Each row is found
-- by primary key and its count looked up by position, never joined with the arrays (the
-- shape of worker_sync and pick_in_order, for the same reason). The status test is a
-- sub-select so that the WAITING-only parent index cannot offer itself as "every WAITING
-- row" either.
UPDATE task_runs c SET
    wait_count = greatest(
        (%(remaining)s::int[])[array_position(%(ids)s::bigint[], c.result_id)], 0),
    status = CASE WHEN (%(remaining)s::int[])[array_position(%(ids)s::bigint[], c.result_id)] <= 0
                  THEN 'READY' ELSE c.status END,
    updated_at = now()
WHERE c.result_id = ANY(%(ids)s::bigint[]) AND c.status = (SELECT 'WAITING')
RETURNING c.result_id;

-- name: worker_fail_waiting
-- Rows that can never run because something upstream failed for good: the chain
-- descendants of %(failed_ids)s and the chord callbacks %(callback_ids)s (with their own
-- descendants), all still WAITING. Each gets a workflow_failed entry naming the failure.
-- The rows are updated by primary key, their cause looked up by position (as in
-- worker_release_callbacks).
WITH RECURSIVE doomed(result_id, cause) AS (
    SELECT s.result_id, s.cause
    FROM (
        SELECT t.result_id, t.parent_id AS cause
        FROM task_runs t
        WHERE t.parent_id = ANY(%(failed_ids)s::bigint[]) AND t.status = 'WAITING'
        UNION ALL
        SELECT u.result_id, u.cause
        FROM unnest(%(callback_ids)s::bigint[], %(callback_causes)s::bigint[])
            AS u(result_id, cause)
    ) s
    UNION
    SELECT t.result_id, d.cause
    FROM doomed d
    JOIN task_runs t ON t.parent_id = d.result_id AND t.status = 'WAITING'
),
-- One cause per row, as two arrays in step.
causes AS (
    SELECT array_agg(d.result_id) AS ids, array_agg(d.cause) AS causes
    FROM (SELECT DISTINCT ON (result_id) result_id, cause FROM doomed ORDER BY result_id) d
)
UPDATE task_runs t SET
    status = 'FAILED',
    failed_at = now(),
    finished_at = now(),
    last_error = 'workflow failed: task '
                 || (SELECT c.causes[array_position(c.ids, t.result_id)] FROM causes c)
                 || ' failed',
    errors_json = coalesce(t.errors_json, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
        'kind', 'workflow_failed',
        'message', 'workflow failed: task '
                   || (SELECT c.causes[array_position(c.ids, t.result_id)] FROM causes c)
                   || ' failed',
        'exception_class', NULL,
        'traceback', NULL,
        'attempt', t.attempts,
        'at', now(),
        'worker_id', %(worker_id)s::text)),
    run_after = NULL,
    wait_count = 0,
    updated_at = now()
WHERE t.result_id = ANY((SELECT c.ids FROM causes c)::bigint[])
  AND t.status = (SELECT 'WAITING')
RETURNING t.result_id, t.workflow_id;

-- name: worker_notify
-- Wake the other workers of these queues: a keyed row they skipped may be free now.
SELECT pg_notify('reproq_tasks', q.queue_name) FROM unnest(%(queues)s::text[]) AS q(queue_name);
