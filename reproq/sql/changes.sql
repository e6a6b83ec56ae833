-- Change notifications: the task_runs triggers of migration 0002 send the queue name on
-- channel reproq_tasks whenever rows become READY (insert, retry, release).

-- name: changes_listen
LISTEN reproq_tasks;

