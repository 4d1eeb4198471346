-- The queue that jobs go to when the submitter names none.
INSERT INTO queues (name, max_retries, ttl_seconds) VALUES ('default', 3, NULL)
ON CONFLICT (name) DO NOTHING;
