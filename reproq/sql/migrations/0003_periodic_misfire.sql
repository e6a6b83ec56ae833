-- reproq's own beat settings: what to do with fire times missed while no beat ran.
ALTER TABLE periodic_tasks
    ADD COLUMN IF NOT EXISTS misfire_policy text NOT NULL DEFAULT 'latest',
    ADD COLUMN IF NOT EXISTS misfire_limit integer NOT NULL DEFAULT 100;
