-- ShutdownWorker must reach the worker through whichever replica serves its heartbeats: the
-- request is stored with the worker and handed out as a command in the next Heartbeat reply.
ALTER TABLE workers ADD COLUMN shutdown_requested boolean NOT NULL DEFAULT false;
