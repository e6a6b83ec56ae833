-- Which periodic_tasks rows a reproq config owns. `reproq up` writes 'reproq-config' into
-- the rows its [[schedules]] create and updates or disables only those; rows written by
-- reproq-django (its PeriodicTask model knows nothing of this column, which is nullable
-- and so invisible to it) or by hand stay NULL and are left alone. Dropping the column
-- undoes this migration.
ALTER TABLE periodic_tasks ADD COLUMN IF NOT EXISTS managed_by text;
